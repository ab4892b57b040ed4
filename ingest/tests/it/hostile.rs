//! Hostile clients over a real socket: slow bodies and headers, oversized
//! and inflating bodies. Each gets its documented answer, the service keeps
//! serving, and nothing reaches Kafka.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, DEADLINE, EphemeralTopic, Service};

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn gzip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(&vec![b' '; 64 * 1024 * 1024])
        .expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_clients_get_4xx_and_nothing_reaches_kafka() {
    let topic = EphemeralTopic::create("hostile").await;
    let mut config = harness::config(&topic.name);
    config.http.body_timeout_ms = 300;
    config.http.header_timeout_ms = 300;
    let service = Service::start(config).await;

    // Slowloris body: headers promise 100 bytes, 10 arrive.
    let mut stream = TcpStream::connect(service.public).await.expect("connect");
    let mut partial = harness::request("POST", "/v1/events", &[JSON], &[b' '; 100]);
    partial.truncate(partial.len() - 90);
    stream.write_all(&partial).await.expect("write");
    let slow = harness::read_answer(&mut stream).await;
    assert_eq!(slow.status, 408);
    assert_eq!(slow.json()["reason"], "body_timeout");

    // Slowloris headers: the connection is closed without an answer.
    let mut stream = TcpStream::connect(service.public).await.expect("connect");
    stream
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: ingest\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "slow headers are cut off");

    // A connection that never sends a byte is closed too.
    let mut idle = TcpStream::connect(service.public).await.expect("connect");
    let closed = tokio::time::timeout(DEADLINE, idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connections are cut off");

    // 10 MB announced: refused from the headers, before the body is read.
    let mut stream = TcpStream::connect(service.public).await.expect("connect");
    let head = "POST /v1/events HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n\
                Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let _ = stream.write_all(&[b' '; 64 * 1024]).await;
    let announced = harness::read_answer(&mut stream).await;
    assert_eq!(announced.status, 413);
    assert_eq!(announced.json()["reason"], "body_too_large");

    // 10 MB chunked, no length announced: cut at the limit.
    let mut stream = TcpStream::connect(service.public).await.expect("connect");
    let head = "POST /v1/events HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let (mut reader, mut writer) = stream.into_split();
    let flood = tokio::spawn(async move {
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        for _ in 0..160 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, reader.read_to_end(&mut response)).await;
    assert!(
        response.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    flood.abort();

    let bomb = harness::post(
        service.public,
        &[JSON, ("Content-Encoding", "gzip")],
        &gzip_bomb(),
    )
    .await;
    assert_eq!(bomb.status, 413);
    assert_eq!(bomb.json()["reason"], "decompressed_too_large");

    let garbage = harness::post(service.public, &[JSON], b"\xff\xfe\x00{[").await;
    assert_eq!(garbage.status, 400);

    // Still serving, and nothing was stored.
    let health = harness::get(service.admin, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let fine = harness::post(
        service.public,
        &[JSON],
        br#"{"site_id":"demo","kind":"pageview","url":"http://localhost/"}"#,
    )
    .await;
    assert_eq!(fine.status, 202);
    assert_eq!(topic.consume(1).len(), 1);
    assert_eq!(
        topic.record_count(),
        1,
        "only the valid beacon reached Kafka"
    );
    service.stop().await;
}
