//! The baseline: the Kafka + transactions floor under the service. A bare
//! loop consumes the raw topic `read_committed` and produces each record's
//! key and bytes unchanged to another topic, through the service's own
//! transaction wrapper with its client settings and batch bounds, the
//! consumer's offsets committed in each transaction. No decoding, no
//! enrichment, no state.

use std::collections::BTreeMap;
use std::time::Duration;

use lumen_enrich::transaction::TransactionalProducer;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Bound of one transactional call.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// One copy job.
pub struct Copy {
    /// Bootstrap brokers.
    pub brokers: String,
    /// Topic read.
    pub source: String,
    /// Topic written.
    pub target: String,
    /// Consumer group, also the `transactional.id`.
    pub group: String,
    /// Most records per transaction.
    pub batch_max_events: usize,
    /// Longest a transaction stays open waiting for records.
    pub batch_max_wait: Duration,
}

impl Copy {
    /// Copies `records` records, one transaction per batch.
    pub async fn run(&self, records: i64) {
        let client = |settings: &[(&str, &str)]| {
            let mut config = ClientConfig::new();
            config.set("bootstrap.servers", &self.brokers);
            for (key, value) in settings {
                config.set(*key, *value);
            }
            config
        };
        // The service's consumer and producer settings (consume.rs).
        let consumer: StreamConsumer = client(&[
            ("group.id", &self.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
        ])
        .create()
        .expect("copy consumer");
        let producer_config = client(&[
            ("transactional.id", &self.group),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", "60000"),
        ]);
        let mut producer = TransactionalProducer::new(&producer_config, TRANSACTION_TIMEOUT)
            .await
            .expect("copy producer");
        consumer.subscribe(&[&self.source]).expect("subscribe");

        let mut copied = 0;
        while copied < records {
            // The batch opens with its first record, as the service's does.
            let first = consumer.recv().await.expect("consume");
            let closes = tokio::time::Instant::now() + self.batch_max_wait;
            let mut transaction = producer.begin().expect("begin");
            let mut next_offsets = BTreeMap::new();
            let mut batch = 0;
            let mut message = Some(first);
            while let Some(record) = message.take() {
                let mut out = BaseRecord::<[u8], [u8]>::to(&self.target)
                    .payload(record.payload().unwrap_or_default());
                if let Some(key) = record.key() {
                    out = out.key(key);
                }
                transaction.send(out).expect("enqueue");
                next_offsets.insert(record.partition(), record.offset() + 1);
                batch += 1;
                if batch < self.batch_max_events && copied + (batch as i64) < records {
                    message = tokio::time::timeout_at(closes, consumer.recv())
                        .await
                        .ok()
                        .map(|received| received.expect("consume"));
                }
            }
            let mut offsets = TopicPartitionList::new();
            for (partition, next) in &next_offsets {
                offsets
                    .add_partition_offset(&self.source, *partition, Offset::Offset(*next))
                    .expect("offsets");
            }
            let group = consumer.group_metadata().expect("group metadata");
            transaction
                .send_offsets(offsets, group)
                .await
                .expect("send offsets");
            transaction.commit().await.expect("commit");
            copied += batch as i64;
        }
    }
}
