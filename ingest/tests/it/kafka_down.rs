//! Kafka unreachable: not ready, and beacons are answered 503 with
//! `Retry-After` within the produce timeout instead of being accepted.

use lumen_runtime::KafkaConfig;

use crate::harness::{self, Service};

#[tokio::test(flavor = "multi_thread")]
async fn kafka_down_is_503_with_retry_after_and_not_ready() {
    let mut config = harness::config("lumen.raw.unreachable");
    config.kafka = KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        options: Vec::new(),
    };
    config.producer.produce_timeout_ms = 1_000;
    config.producer.retry_after_seconds = 7;
    let service = Service::start(config).await;

    let answer = harness::post(
        service.public,
        &[("Content-Type", "application/json")],
        br#"{"site_id":"demo","kind":"pageview","url":"http://localhost/"}"#,
    )
    .await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("7"));
    assert_eq!(answer.json()["reason"], "kafka_unavailable");
    service.wait_ready(503).await;

    let metrics =
        String::from_utf8(harness::get(service.admin, "/metrics", &[]).await.body).expect("text");
    assert!(
        metrics.contains("lumen_ingest_events_total{kind=\"pageview\",outcome=\"not_stored\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lumen_ingest_produce_errors_total{stage=\"delivery\""),
        "{metrics}"
    );
    service.stop().await;
}
