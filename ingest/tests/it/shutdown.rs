//! Shutdown: stop accepting, finish the request in flight (its event is
//! stored and acknowledged), flush, exit cleanly.

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{self, DEADLINE, EphemeralTopic, Service};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_the_request_in_flight() {
    let topic = EphemeralTopic::create("shutdown").await;
    let service = Service::start(harness::config(&topic.name)).await;

    let body = br#"{"site_id":"demo","kind":"pageview","url":"http://localhost/last"}"#;
    let request = harness::request(
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        body,
    );
    let (first, rest) = request.split_at(request.len() - 10);
    let mut stream = TcpStream::connect(service.public).await.expect("connect");
    stream.write_all(first).await.expect("write");

    // Wait until the server is inside the handler, reading the body.
    let started = Instant::now();
    loop {
        let metrics = harness::get(service.admin, "/metrics", &[]).await;
        if String::from_utf8_lossy(&metrics.body).contains("lumen_ingest_requests_in_flight 1") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "request never in flight");
        tokio::task::yield_now().await;
    }
    service.shutdown.trigger();
    stream.write_all(rest).await.expect("write the rest");
    let answer = harness::read_answer(&mut stream).await;
    assert_eq!(answer.status, 202, "{answer:?}");

    let public = service.public;
    service.stop().await;
    assert!(
        TcpStream::connect(public).await.is_err(),
        "no longer accepting"
    );
    assert_eq!(topic.consume(1).len(), 1, "the last event is stored");
}
