//! A transactional producer replaced after a fatal error: its successor,
//! under the same `transactional.id`, aborts what the old one left open and
//! commits on, so `read_committed` readers see only the new transaction.

use std::time::Duration;

use lumen_enrich::error::Error;
use lumen_enrich::transaction::TransactionalProducer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;

use crate::harness::{Topics, client, read_committed, read_uncommitted, unique};

#[tokio::test]
async fn a_renewed_producer_aborts_what_was_left_open_and_commits_on() {
    let topics = Topics::create("renew").await;
    let topic = topics.names.enriched.as_str();
    let transactional_id = unique("it-enrich-renew");
    let config = client(&[
        ("transactional.id", &transactional_id),
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "1"),
    ]);
    let mut producer = TransactionalProducer::new(&config, Duration::from_secs(10))
        .await
        .expect("producer");

    let mut stranded = producer.begin().expect("begin");
    stranded
        .send(BaseRecord::to(topic).key("k").payload("left open"))
        .expect("send");
    // Dropped neither committed nor aborted, as a broker restart left one;
    // the pause lets the record reach the broker inside the transaction.
    drop(stranded);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let fatal =
        Error::kafka("abort transaction")(KafkaError::MessageProduction(RDKafkaErrorCode::Fatal));
    assert!(producer.may_renew(&fatal));
    producer.renew(&fatal).await.expect("renew");

    let mut next = producer.begin().expect("begin after renewal");
    next.send(BaseRecord::to(topic).key("k").payload("committed"))
        .expect("send");
    next.commit().await.expect("commit after renewal");

    let payloads = |messages: Vec<rdkafka::message::OwnedMessage>| -> Vec<Vec<u8>> {
        messages
            .iter()
            .map(|m| m.payload().unwrap_or_default().to_vec())
            .collect()
    };
    assert_eq!(
        payloads(read_uncommitted(topic).await),
        vec![b"left open".to_vec(), b"committed".to_vec()],
        "the stranded record reached the broker"
    );
    assert_eq!(
        payloads(read_committed(topic).await),
        vec![b"committed".to_vec()],
        "and its transaction was aborted by the renewal"
    );
}
