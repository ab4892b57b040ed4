//! The admin HTTP server every binary runs on its admin port:
//! `/metrics` (Prometheus text format), `/healthz` (the process is alive) and
//! `/readyz` (the process can do its work right now, as its owner reports).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;

/// Whether the service can do its work right now (for example: Kafka
/// metadata reachable). Cloned into the code that knows, read by `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
}

impl Readiness {
    /// Starts as not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the current state.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The last recorded state.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    readiness: Readiness,
}

/// A running admin server.
pub struct AdminServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Ends when the shutdown signal fires and open requests are answered.
    pub task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Binds `addr` and serves until `shutdown` fires.
    pub async fn start(
        addr: SocketAddr,
        registry: Registry,
        readiness: Readiness,
        shutdown: Shutdown,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let app = router(registry, readiness);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
        });
        tracing::info!(%local_addr, "admin server listening");
        Ok(Self { local_addr, task })
    }
}

fn router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AdminState {
            registry,
            readiness,
        })
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(16 * 1024);
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            error.to_string().into_bytes(),
        ),
    }
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use prometheus::IntCounter;

    use super::*;

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let status = response[9..12].parse().expect("status code");
        (status, response)
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let registry = Registry::new();
        let counter = IntCounter::new("lumen_test_things_total", "things").expect("counter");
        registry
            .register(Box::new(counter.clone()))
            .expect("register");
        counter.inc_by(7);
        let readiness = Readiness::new();
        let shutdown = Shutdown::new();
        let server = AdminServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            registry,
            readiness.clone(),
            shutdown.clone(),
        )
        .await
        .expect("start");

        let (status, body) = get_text(server.local_addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("lumen_test_things_total 7"), "{body}");
        assert_eq!(get_text(server.local_addr, "/healthz").await.0, 200);
        assert_eq!(get_text(server.local_addr, "/readyz").await.0, 503);
        readiness.set(true);
        assert_eq!(get_text(server.local_addr, "/readyz").await.0, 200);

        shutdown.trigger();
        server.task.await.expect("join").expect("serve");
    }
}
