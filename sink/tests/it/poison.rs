//! Records that can never be rows go to the dead-letter topic with their
//! reason; everything else in their batches lands.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

use crate::harness::{Harness, InProcessSink, brokers, events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dlq_and_the_rest_lands() {
    let harness = Harness::new("poison").await;
    let good = events(0, 1_000);
    let mut poison = events(10_000, 4);
    poison[0].site_id = String::new(); // refused by a table constraint
    poison[1].received_at = 1_500_000_000_000; // 2017: refused by a table constraint
    poison[2].event_id = "not-a-uuid".to_owned(); // refused before ClickHouse
    let garbage: &[u8] = b"\x00definitely not avro";

    harness.produce(&good[..500]).await;
    harness.produce(&poison[..3]).await;
    harness
        .produce_raw(std::iter::once((b"k".as_slice(), garbage)))
        .await;
    harness.produce(&good[500..]).await;

    let sink = InProcessSink::start(harness.config());
    harness.expect_exactly(1_000).await;

    let reasons = dead_letter_reasons(&harness.dlq, 4).await;
    let expected: BTreeMap<String, usize> = [
        ("violated_constraint", 2),
        ("invalid_event_id", 1),
        ("bad_magic", 1),
    ]
    .into_iter()
    .map(|(reason, n)| (reason.to_owned(), n))
    .collect();
    assert_eq!(reasons, expected);
    sink.stop().await;
}

/// Reads `n` records of the dead-letter topic and counts their reasons.
async fn dead_letter_reasons(topic: &str, n: usize) -> BTreeMap<String, usize> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut reasons = BTreeMap::new();
    for _ in 0..n {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a dead letter in time")
            .expect("dead letter");
        let headers = message.headers().expect("headers");
        let reason = headers
            .iter()
            .find(|h| h.key == lumen_sink::dlq::REASON_HEADER)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("reason header");
        *reasons.entry(reason).or_default() += 1;
    }
    reasons
}
