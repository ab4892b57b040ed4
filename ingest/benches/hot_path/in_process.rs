//! CPU cost without sockets or Kafka, in this process: ingest's event work
//! against a plain JSON parse, and the whole router against a bare axum
//! handler. They say where the time of the HTTP figures goes.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use lumen_ingest::config::Limits;
use lumen_ingest::metrics::Metrics;
use lumen_ingest::privacy::VisitorHasher;
use lumen_ingest::produce::{ProduceError, Producer, Record};
use lumen_ingest::routes::{AppState, router};
use lumen_ingest::sites::Sites;
use lumen_ingest::tracker::TrackerScript;
use lumen_schemas::Codec;
use tower::ServiceExt;

use crate::fixtures::{Encoder, ORIGIN, SECRET, SITES, USER_AGENT};

/// Calls per timed chunk: short enough that some chunks run while nothing
/// else uses the machine.
const CHUNK: u32 = 10;

/// Wall time per call of `f`: the fastest of the `CHUNK`-call chunks run
/// during `total`. Not a mean of CPU time: processes sharing the 2 cores
/// slow this thread down without descheduling it (shared caches and
/// execution units), which inflates its CPU time as much as its wall time
/// (the mean of either moved 1.3–1.9× between runs, and the router's gap
/// over the event work from 10 to 110 µs), and they only ever add time:
/// the fastest chunk moved by ±3%.
fn measure(total: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..100 {
        f();
    }
    let started = Instant::now();
    let mut fastest = Duration::MAX;
    while started.elapsed() < total {
        let chunk = Instant::now();
        for _ in 0..CHUNK {
            f();
        }
        fastest = fastest.min(chunk.elapsed() / CHUNK);
    }
    fastest
}

/// `decode + validate + encode` of the batch vs `serde_json` parsing it
/// into a `Value` (the least any JSON collector does), per batch.
pub fn event_work(body: &Bytes, total: Duration) -> (Duration, Duration) {
    let encoder = Encoder::new();
    let measured = measure(total, || {
        black_box(encoder.records(black_box(body)));
    });
    let baseline = measure(total, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).expect("json"));
    });
    (measured, baseline)
}

/// A producer that acknowledges at once: this section measures ingest, not Kafka.
struct Discard;

impl Producer for Discard {
    async fn send_all(&self, records: Vec<Record>) -> Result<(), ProduceError> {
        black_box(records);
        Ok(())
    }

    fn queue_depth(&self) -> usize {
        0
    }
}

fn request(body: &Bytes) -> Request<Body> {
    let mut request = Request::post("/v1/events")
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", ORIGIN)
        .header("user-agent", USER_AGENT)
        .body(Body::from(body.clone()))
        .expect("request");
    let peer: SocketAddr = "203.0.113.7:40000".parse().expect("peer");
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

/// The ingest router (CORS, limits, decoding, validation, visitor hashing,
/// Avro, a producer that discards) vs a bare axum handler that reads the
/// body and answers 202, both called without sockets, per batch.
pub fn router_work(body: &Bytes, total: Duration) -> (Duration, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ingest = router(Arc::new(AppState {
        producer: Arc::new(Discard),
        codec: Codec::new().expect("codec"),
        sites: Sites::parse(SITES).expect("sites"),
        hasher: VisitorHasher::new(SECRET),
        tracker: TrackerScript::from_bytes(&b""[..]),
        metrics: Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        limits: Limits::default(),
        trusted_proxies: Vec::new(),
        body_timeout: Duration::from_secs(10),
        retry_after_seconds: 5,
    }));
    let bare = Router::new().route(
        "/v1/events",
        post(|body: Bytes| async move {
            black_box(body);
            StatusCode::ACCEPTED
        }),
    );
    let call = |app: &Router| {
        let response = runtime
            .block_on(app.clone().oneshot(request(body)))
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    };
    let measured = measure(total, || call(&ingest));
    let baseline = measure(total, || call(&bare));
    (measured, baseline)
}
