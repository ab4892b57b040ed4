//! Hot-path benchmark of `lumen-ingest`, each figure next to a baseline
//! measured in the same run, reported as a ratio:
//!
//! 1. `decode+validate+encode` of a 20-event batch vs `serde_json` parsing the
//!    same body into a `Value` (the least any JSON collector does);
//! 2. the whole ingest router (CORS, limits, decoding, validation, visitor
//!    hashing, Avro, a producer that discards) vs a bare axum handler that
//!    reads the body and answers 202, both called in-process without sockets;
//! 3. when Kafka answers at `LUMEN_KAFKA_BROKERS` (default 127.0.0.1:9092):
//!    HTTP load over keep-alive connections against the real service writing
//!    to an ephemeral topic (acks=all, answered after the acknowledgement) vs
//!    a bare axum server answering 202 on the same socket set-up.
//!
//! Run: `cargo bench -p lumen-ingest --bench hot_path` (set
//! `LUMEN_BENCH_SECONDS` to change the time per sample, default 1).

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
use lumen_ingest::decode::parse_events;
use lumen_ingest::metrics::Metrics;
use lumen_ingest::privacy::VisitorHasher;
use lumen_ingest::produce::{ProduceError, Producer, Record};
use lumen_ingest::routes::{AppState, router};
use lumen_ingest::sites::Sites;
use lumen_ingest::tracker::TrackerScript;
use lumen_ingest::validate::{RequestContext, validate};
use lumen_schemas::{Codec, RawEvent};
use tower::ServiceExt;

const SAMPLES: usize = 5;
const BATCH: usize = 20;

/// A producer that acknowledges at once: the benchmark measures ingest, not Kafka.
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

fn batch_body() -> Bytes {
    let events: Vec<String> = (0..BATCH)
        .map(|i| {
            format!(
                r#"{{"site_id":"demo","kind":"pageview","url":"http://localhost:3000/news/2026/story-{i}?ls=AcB3bAEjRWeJq83Q&utm_source=newsletter","referrer":"https://www.google.com/","sent_at":1764417600000,"minted_token":"AcB3bAEjRWeJq83R"}}"#
            )
        })
        .collect();
    Bytes::from(format!("[{}]", events.join(",")))
}

/// Median time per call of `f` over `SAMPLES` samples.
fn measure(mut f: impl FnMut()) -> Duration {
    let sample = Duration::from_secs_f64(
        std::env::var("LUMEN_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    for _ in 0..100 {
        f();
    }
    let mut per_call: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            let mut calls = 0u32;
            while started.elapsed() < sample {
                f();
                calls += 1;
            }
            started.elapsed() / calls
        })
        .collect();
    per_call.sort();
    per_call[SAMPLES / 2]
}

fn report(name: &str, baseline_name: &str, baseline: Duration, measured: Duration) {
    println!(
        "{name:<34} {:>9.2} µs/batch  ({:>7.0} events/s)",
        measured.as_secs_f64() * 1e6,
        BATCH as f64 / measured.as_secs_f64()
    );
    println!(
        "{baseline_name:<34} {:>9.2} µs/batch  ({:>7.0} events/s)",
        baseline.as_secs_f64() * 1e6,
        BATCH as f64 / baseline.as_secs_f64()
    );
    println!(
        "ratio {name} / {baseline_name}: {:.2}x\n",
        measured.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn state() -> Arc<AppState<Discard>> {
    Arc::new(AppState {
        producer: Arc::new(Discard),
        codec: Codec::new().expect("codec"),
        sites: Sites::parse(include_str!("../sites.example.json")).expect("sites"),
        hasher: VisitorHasher::new("benchmark-secret-0123"),
        tracker: TrackerScript::from_bytes(&b""[..]),
        metrics: Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        limits: Limits::default(),
        trusted_proxies: Vec::new(),
        body_timeout: Duration::from_secs(10),
        retry_after_seconds: 5,
    })
}

fn decoding(body: &Bytes) {
    let sites = Sites::parse(include_str!("../sites.example.json")).expect("sites");
    let hasher = VisitorHasher::new("benchmark-secret-0123");
    let codec = Codec::<RawEvent>::new().expect("codec");
    let ctx = RequestContext {
        sites: &sites,
        hasher: &hasher,
        client_ip: "203.0.113.7".parse().expect("ip"),
        user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)",
        header_referrer: None,
        received_at: 1_764_417_600_000,
        max_url_bytes: 4096,
    };
    let baseline = measure(|| {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).expect("json"));
    });
    let measured = measure(|| {
        for wire in parse_events(black_box(body), 500).expect("events") {
            let event = validate(wire.expect("wire"), &ctx).expect("valid");
            black_box(codec.encode(&event).expect("avro"));
        }
    });
    report(
        "decode+validate+encode",
        "serde_json::Value parse",
        baseline,
        measured,
    );
}

fn request(body: &Bytes) -> Request<Body> {
    let mut request = Request::post("/v1/events")
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "http://localhost:3000")
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)",
        )
        .body(Body::from(body.clone()))
        .expect("request");
    let peer: SocketAddr = "203.0.113.7:40000".parse().expect("peer");
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn routing(body: &Bytes) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bare = Router::new().route(
        "/v1/events",
        post(|body: Bytes| async move {
            black_box(body);
            StatusCode::ACCEPTED
        }),
    );
    let ingest = router(state());
    let call = |app: &Router| {
        let response = runtime
            .block_on(app.clone().oneshot(request(body)))
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    };
    let baseline = measure(|| call(&bare));
    let measured = measure(|| call(&ingest));
    report(
        "ingest router (no Kafka)",
        "bare axum 202",
        baseline,
        measured,
    );
}

/// Concurrent keep-alive connections of the load test.
const CONNECTIONS: usize = 16;

/// Sends `request` over one keep-alive connection until `until`, returning
/// the latency of every answer.
async fn client(addr: SocketAddr, request: Arc<Vec<u8>>, until: Instant) -> Vec<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut latencies = Vec::new();
    let mut buffer = Vec::with_capacity(4096);
    while Instant::now() < until {
        let started = Instant::now();
        stream.write_all(&request).await.expect("write");
        buffer.clear();
        let (head_end, length) = loop {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "server closed the connection");
            buffer.extend_from_slice(&chunk[..read]);
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 202"), "{head}");
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().expect("length"));
                break (end + 4, length);
            }
        };
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "server closed the connection");
            buffer.extend_from_slice(&chunk[..read]);
        }
        latencies.push(started.elapsed());
    }
    latencies
}

/// Requests per second and latency percentiles of `CONNECTIONS` clients.
async fn load(addr: SocketAddr, body: &Bytes) -> (f64, Duration, Duration) {
    let seconds = std::env::var("LUMEN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0_f64)
        * 3.0;
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Origin: http://localhost:3000\r\nUser-Agent: Mozilla/5.0 (bench)\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let request = Arc::new(request);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(addr, request.clone(), until)))
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.expect("client"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    (
        latencies.len() as f64 / elapsed,
        percentile(0.5),
        percentile(0.99),
    )
}

fn kafka_load(body: &Bytes) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let brokers = std::env::var("LUMEN_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let reachable = brokers
        .split(',')
        .filter_map(|broker| std::net::ToSocketAddrs::to_socket_addrs(broker).ok())
        .flatten()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    if !reachable {
        println!("HTTP + Kafka load test skipped: no Kafka at {brokers}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("admin");
        let topic = format!("lumen-ingest-bench-{}", std::process::id());
        let options = AdminOptions::new();
        admin
            .create_topics([&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &options)
            .await
            .expect("create topic");

        let bare = Router::new().route(
            "/v1/events",
            post(|body: Bytes| async move {
                black_box(body);
                StatusCode::ACCEPTED
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bare_addr = listener.local_addr().expect("addr");
        let bare_server = tokio::spawn(async move { axum::serve(listener, bare).await });
        let (bare_rate, bare_p50, bare_p99) = load(bare_addr, body).await;
        bare_server.abort();

        let mut config = lumen_ingest::Config::default();
        config.http.listen_addr = "127.0.0.1:0".parse().expect("addr");
        config.admin.addr = Some("127.0.0.1:0".parse().expect("addr"));
        config.kafka.brokers = brokers.clone();
        config.topics.raw = topic.clone();
        config.privacy.visitor_secret = Some("benchmark-secret-0123".into());
        config.privacy.sites_file =
            Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sites.example.json"));
        let shutdown = lumen_runtime::Shutdown::new();
        let running = lumen_ingest::start(config, shutdown.clone()).await.expect("ingest");
        let (rate, p50, p99) = load(running.public_addr, body).await;
        shutdown.trigger();
        running.wait().await.expect("clean stop");
        let _ = admin.delete_topics(&[&topic], &options).await;

        println!("HTTP load, {CONNECTIONS} keep-alive connections, {BATCH} events a request:");
        println!(
            "ingest + Kafka (acks=all)   {rate:>8.0} req/s {:>9.0} events/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            rate * BATCH as f64,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        println!(
            "bare axum 202               {bare_rate:>8.0} req/s {:>9.0} events/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            bare_rate * BATCH as f64,
            bare_p50.as_secs_f64() * 1e3,
            bare_p99.as_secs_f64() * 1e3
        );
        println!(
            "ratio throughput ingest+Kafka / bare axum: {:.2}x, p50 latency: {:.2}x",
            rate / bare_rate,
            p50.as_secs_f64() / bare_p50.as_secs_f64()
        );
    });
}

fn main() {
    let body = batch_body();
    println!(
        "lumen-ingest hot path, batches of {BATCH} pageviews ({} bytes)\n",
        body.len()
    );
    decoding(&body);
    routing(&body);
    kafka_load(&body);
}
