//! Dead letters: Kafka records of `lumen.enriched` that never become rows
//! (undecodable payloads, ids that are not UUIDs) and rows ClickHouse
//! refuses as invalid. Each goes to `lumen.dlq` with its original key and
//! payload and the reason in headers, before the batch's offsets are
//! committed. Delivery is at least once: a batch replayed after a crash sends
//! its dead letters again. Deciding what is a dead letter is not done here.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::error::Result;

/// Header with the bounded reason label (shared with enrich's dead letters).
pub const REASON_HEADER: &str = "lumen.reason";
/// Header with the full error message.
pub const ERROR_HEADER: &str = "lumen.error";
/// Header naming the stage that gave up on the record.
pub const STAGE_HEADER: &str = "lumen.stage";
/// Header with `topic/partition/offset` of the original record.
pub const ORIGIN_HEADER: &str = "lumen.origin";

/// A record that will not reach ClickHouse.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Partition of the original record.
    pub partition: i32,
    /// Offset of the original record.
    pub offset: i64,
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original payload.
    pub payload: Vec<u8>,
    /// Bounded label, for the header and metrics.
    pub reason: &'static str,
    /// Full message.
    pub detail: String,
}

/// Where dead letters go; a trait so that the delivery path does not depend
/// on a broker.
pub trait DeadLetters: Send + Sync + 'static {
    /// Sends every letter and returns once all are acknowledged.
    fn send(&self, letters: &[DeadLetter]) -> impl Future<Output = Result<(), KafkaError>> + Send;
}

/// The Kafka producer of dead letters, created when the first one is
/// sent: an idle rdkafka `FutureProducer` is not free, its polling thread
/// spins for the last millisecond of every 100 ms poll (the timeout left is
/// rounded down to 0 ms), about 1% of a core, which was 7–9% of the sink's
/// CPU in `make bench-sink`. Dead letters are rare.
pub struct KafkaDeadLetters {
    config: ClientConfig,
    producer: OnceLock<FutureProducer>,
    dlq_topic: String,
    source_topic: String,
}

impl KafkaDeadLetters {
    /// A producer with acks from all in-sync replicas and idempotence, so a
    /// retried send is not duplicated by the producer itself.
    pub fn new(kafka: &lumen_runtime::KafkaConfig, dlq_topic: &str, source_topic: &str) -> Self {
        Self {
            config: kafka.client_config(&[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
                ("message.timeout.ms", "30000"),
            ]),
            producer: OnceLock::new(),
            dlq_topic: dlq_topic.to_owned(),
            source_topic: source_topic.to_owned(),
        }
    }

    /// The producer, created on first use; a failure is the send's, retried.
    fn producer(&self) -> Result<&FutureProducer, KafkaError> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let producer = self.config.create()?;
        Ok(self.producer.get_or_init(|| producer))
    }
}

impl DeadLetters for KafkaDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), KafkaError> {
        // Enqueue everything first, then await the acknowledgements, so the
        // sends share round trips.
        let mut deliveries = Vec::with_capacity(letters.len());
        for letter in letters {
            let origin = format!(
                "{}/{}/{}",
                self.source_topic, letter.partition, letter.offset
            );
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: REASON_HEADER,
                    value: Some(letter.reason),
                })
                .insert(Header {
                    key: ERROR_HEADER,
                    value: Some(letter.detail.as_str()),
                })
                .insert(Header {
                    key: STAGE_HEADER,
                    value: Some("sink"),
                })
                .insert(Header {
                    key: ORIGIN_HEADER,
                    value: Some(origin.as_str()),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic)
                .payload(&letter.payload)
                .headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            deliveries.push(self.producer()?.send(record, Duration::from_secs(0)));
        }
        for delivery in deliveries {
            delivery.await.map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}
