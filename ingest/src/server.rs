//! The public listener: accepts connections and serves [`Public`] over
//! HTTP/1.1 with a header read timeout (axum's own `serve` has none, which
//! lets slowloris clients hold connections forever), gives it each
//! request's peer address, and on shutdown stops accepting and lets in-flight
//! requests finish within the drain timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use lumen_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::routes::Public;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Timeouts of the public listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// Longest time to receive a request's headers.
    pub header_read: Duration,
    /// Longest wait for in-flight requests on shutdown.
    pub drain: Duration,
}

/// A running public server.
pub struct PublicServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Ends once shutdown fired and in-flight requests are answered.
    pub task: JoinHandle<()>,
}

impl PublicServer {
    /// Binds `addr` and serves `public` until `shutdown` fires.
    pub async fn start(
        addr: SocketAddr,
        public: Public,
        timeouts: ServerTimeouts,
        shutdown: Shutdown,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, "public server listening");
        let task = tokio::spawn(serve(listener, Arc::new(public), timeouts, shutdown));
        Ok(Self { local_addr, task })
    }
}

async fn serve(
    listener: TcpListener,
    public: Arc<Public>,
    timeouts: ServerTimeouts,
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        // Beacons are small: send answers without Nagle's delay.
        let _ = stream.set_nodelay(true);
        let public = public.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let public = public.clone();
            async move { Ok::<_, Infallible>(public.answer(request.map(Body::new), peer).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("public server stopped accepting; draining in-flight requests");
    if tokio::time::timeout(timeouts.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?timeouts.drain, "in-flight requests did not finish in time");
    }
}
