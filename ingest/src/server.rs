//! The public listener: accepts connections and serves [`Public`] over
//! HTTP/1.1 with a header read timeout (axum's own `serve` has none, which
//! lets slowloris clients hold connections forever), gives it each
//! request's peer address, and on shutdown stops accepting and lets in-flight
//! requests finish within the drain timeout.
//!
//! At most `max_connections` are open at once: each holds a semaphore
//! permit, and at the cap the listener stops calling `accept` until one
//! closes, so further clients wait in the kernel's listen backlog (whose
//! overflow the kernel drops) instead of costing the process a task each.

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::metrics::{Held, Metrics};
use crate::produce::Producer;
use crate::routes::Public;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Timeouts and the connection cap of the public listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest time to receive a request's headers.
    pub header_read: Duration,
    /// Longest wait for in-flight requests on shutdown.
    pub drain: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
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
    pub async fn start<P: Producer>(
        addr: SocketAddr,
        public: Public<P>,
        limits: ServerLimits,
        shutdown: Shutdown,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        tracing::info!(
            %local_addr,
            max_connections = limits.max_connections,
            "public server listening"
        );
        let task = tokio::spawn(serve(listener, Arc::new(public), limits, shutdown));
        Ok(Self { local_addr, task })
    }
}

async fn serve<P: Producer>(
    listener: TcpListener,
    public: Arc<Public<P>>,
    limits: ServerLimits,
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    // `Semaphore::new` panics above MAX_PERMITS, far beyond any descriptor limit.
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let metrics = public.metrics().clone();
    loop {
        let Some(slot) = connection_slot(&slots, &metrics, &shutdown).await else {
            break;
        };
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
        let open = metrics.connections_open.clone();
        tokio::spawn(async move {
            // Both last as long as the connection, and drop in this order,
            // so the gauge never counts more than the cap.
            let _open = (Held::start(&open), slot);
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("public server stopped accepting; draining in-flight requests");
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?limits.drain, "in-flight requests did not finish in time");
    }
}

/// A free connection slot, waiting (and counting the wait) while every
/// slot is taken; `None` once shutdown fires.
async fn connection_slot(
    slots: &Arc<Semaphore>,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    metrics.connection_cap_reached.inc();
    // Not a warning: a client holding the cap would log one per connection
    // that closes. The counter is what to watch.
    tracing::debug!("connection cap reached: not accepting until a connection closes");
    tokio::select! {
        // Fails only on a closed semaphore, which this one never is.
        slot = slots.clone().acquire_owned() => slot.ok(),
        () = shutdown.wait() => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use http_body_util::Empty;
    use hyper::client::conn::http1 as client;
    use tokio::net::TcpStream;

    use super::*;
    use crate::produce::RecordingProducer;
    use crate::routes::tests::state;

    /// A keep-alive client connection; aborting its task closes the socket.
    struct Client {
        sender: client::SendRequest<Empty<Bytes>>,
        connection: JoinHandle<()>,
    }

    impl Client {
        /// Connects; the kernel completes the handshake even when the
        /// server does not accept (the connection then waits in the backlog).
        async fn connect(addr: SocketAddr) -> Self {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (sender, connection) = client::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            let connection = tokio::spawn(async move {
                let _ = connection.await;
            });
            Self { sender, connection }
        }

        /// The status of `GET /t.js`.
        async fn get(&mut self) -> u16 {
            let request = hyper::Request::get("/t.js")
                .header("host", "ingest")
                .body(Empty::new())
                .expect("request");
            let response = self.sender.send_request(request).await.expect("answer");
            response.status().as_u16()
        }
    }

    #[tokio::test]
    async fn at_the_cap_a_connection_is_served_only_once_another_closes() {
        let public = Public::new(state(RecordingProducer::default()));
        let metrics = public.metrics().clone();
        let shutdown = Shutdown::new();
        let limits = ServerLimits {
            header_read: Duration::from_secs(30),
            drain: Duration::from_secs(1),
            max_connections: 2,
        };
        let server = PublicServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            public,
            limits,
            shutdown.clone(),
        )
        .await
        .expect("server");

        let mut first = Client::connect(server.local_addr).await;
        let mut second = Client::connect(server.local_addr).await;
        assert_eq!(first.get().await, 200);
        assert_eq!(second.get().await, 200);
        assert_eq!(metrics.connections_open.get(), 2);

        let mut third = Client::connect(server.local_addr).await;
        let waiting = tokio::spawn(async move { third.get().await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a third connection is not served");
        assert_eq!(metrics.connection_cap_reached.get(), 1);
        assert_eq!(second.get().await, 200, "the open ones still are");

        first.connection.abort();
        let status = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("served once the first closed")
            .expect("join");
        assert_eq!(status, 200);
        assert_eq!(metrics.connections_open.get(), 2);

        shutdown.trigger();
        drop((second, first));
        server.task.await.expect("server stops");
    }
}
