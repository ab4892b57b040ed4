//! Delivery to `lumen.raw`: a [`Producer`] trait with the rdkafka
//! implementation and a recording fake that can fail at message N. Pure
//! mechanism: what to send and what to answer the client is decided in
//! `routes`. A batch is done only when Kafka has acknowledged every record;
//! enqueue failures (queue full) and delivery failures (timeout, broker
//! errors) are distinct outcomes.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lumen_runtime::KafkaConfig;
use lumen_runtime::delivery::{AckReports, Acks};
use lumen_runtime::kafka::error_tag;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::util::Timeout;

use crate::config::ProducerConfig;

/// One Kafka record: the event's partition key and its Avro payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// [`lumen_schemas::RawEvent::partition_key`].
    pub key: String,
    /// Single-object Avro.
    pub payload: Vec<u8>,
}

/// Why records were not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The producer refused to queue a record (queue full, client failure).
    #[error("cannot enqueue: {0}")]
    Enqueue(#[source] KafkaError),
    /// Kafka did not confirm a record in time, or refused it.
    #[error("not delivered: {0}")]
    Delivery(#[source] KafkaError),
}

impl ProduceError {
    /// `enqueue` or `delivery`.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Enqueue(_) => "enqueue",
            Self::Delivery(_) => "delivery",
        }
    }

    /// The bounded tag of the Kafka error.
    pub fn tag(&self) -> &'static str {
        match self {
            Self::Enqueue(error) | Self::Delivery(error) => error_tag(error),
        }
    }
}

/// Sends batches of records and says when all of them are safely stored.
pub trait Producer: Send + Sync + 'static {
    /// Queues every record, then resolves once all are acknowledged, or with
    /// the first failure. Records queued before a failure may still be stored:
    /// clients that retry should send `event_id` so duplicates collapse.
    fn send_all(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), ProduceError>> + Send;

    /// Records (and, for librdkafka, internal requests) queued and not yet
    /// acknowledged.
    fn queue_depth(&self) -> usize;
}

/// librdkafka producer settings: idempotent, `acks=all`, compressed, with a
/// bounded `message.timeout.ms` so no request waits forever.
pub fn producer_defaults(config: &ProducerConfig) -> Vec<(&'static str, String)> {
    vec![
        ("client.id", "lumen-ingest".into()),
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        (
            "compression.type",
            config.compression.as_librdkafka().into(),
        ),
        ("linger.ms", config.linger_ms.to_string()),
        ("message.timeout.ms", config.produce_timeout_ms.to_string()),
        (
            "queue.buffering.max.messages",
            config.queue_max_messages.to_string(),
        ),
    ]
}

/// The rdkafka implementation: one [`Acks`] per `send_all`.
pub struct KafkaProducer {
    producer: ThreadedProducer<AckReports>,
    topic: String,
}

impl KafkaProducer {
    /// A producer for `topic`; connects lazily.
    pub fn new(
        kafka: &KafkaConfig,
        config: &ProducerConfig,
        topic: &str,
    ) -> Result<Self, KafkaError> {
        let defaults = producer_defaults(config);
        let defaults: Vec<(&str, &str)> = defaults
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        Ok(Self {
            producer: kafka
                .client_config(&defaults)
                .create_with_context(AckReports)?,
            topic: topic.to_owned(),
        })
    }

    /// Fetches the topic's metadata (blocking: call from `spawn_blocking`);
    /// success means Kafka is reachable and the topic exists.
    pub fn check_metadata(&self, timeout: Duration) -> Result<(), KafkaError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), Timeout::After(timeout))?;
        let topic_error = metadata
            .topics()
            .iter()
            .find(|topic| topic.name() == self.topic)
            .map(|topic| topic.error());
        match topic_error {
            Some(None) => Ok(()),
            Some(Some(code)) => Err(KafkaError::MetadataFetch(code.into())),
            None => Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            )),
        }
    }

    /// Waits until every queued record is acknowledged (blocking).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

impl Producer for KafkaProducer {
    async fn send_all(&self, records: Vec<Record>) -> Result<(), ProduceError> {
        let acks = Arc::new(Acks::default());
        acks.add(records.len());
        let mut enqueue_error = None;
        for (queued, record) in records.iter().enumerate() {
            let message = BaseRecord::with_opaque_to(&self.topic, acks.clone())
                .key(record.key.as_bytes())
                .payload(record.payload.as_slice());
            if let Err((error, _)) = self.producer.send(message) {
                enqueue_error = Some(error);
                acks.settle(records.len() - queued, None);
                break;
            }
        }
        // Wait even after an enqueue failure: the queued records are in
        // flight and their outcome must not be left dangling.
        acks.all_settled().await;
        match (enqueue_error, acks.failure()) {
            (Some(error), _) => Err(ProduceError::Enqueue(error)),
            (None, Some(error)) => Err(ProduceError::Delivery(error)),
            (None, None) => Ok(()),
        }
    }

    fn queue_depth(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }
}

/// A fake that records what it is sent, for tests of the HTTP layer. With
/// [`RecordingProducer::failing_at`] the N-th record (0-based, counted over
/// the producer's life) and every later one fail.
#[derive(Debug, Default, Clone)]
pub struct RecordingProducer {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    sent: Vec<Record>,
    seen: usize,
    fail_at: Option<(usize, FakeFailure)>,
}

/// Which stage the fake fails in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeFailure {
    /// Like a full producer queue.
    QueueFull,
    /// Like a delivery timeout.
    TimedOut,
}

impl RecordingProducer {
    /// A fake that fails record `index` and every later one.
    pub fn failing_at(index: usize, failure: FakeFailure) -> Self {
        let fake = Self::default();
        fake.lock().fail_at = Some((index, failure));
        fake
    }

    /// Everything stored so far.
    pub fn sent(&self) -> Vec<Record> {
        self.lock().sent.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A panicking test thread must not hide the records from the others.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Producer for RecordingProducer {
    async fn send_all(&self, records: Vec<Record>) -> Result<(), ProduceError> {
        let mut state = self.lock();
        for record in records {
            let index = state.seen;
            state.seen += 1;
            match state.fail_at {
                Some((at, FakeFailure::QueueFull)) if index >= at => {
                    return Err(ProduceError::Enqueue(KafkaError::MessageProduction(
                        RDKafkaErrorCode::QueueFull,
                    )));
                }
                Some((at, FakeFailure::TimedOut)) if index >= at => {
                    return Err(ProduceError::Delivery(KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageTimedOut,
                    )));
                }
                _ => state.sent.push(record),
            }
        }
        Ok(())
    }

    fn queue_depth(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;

    fn record(key: &str) -> Record {
        Record {
            key: key.into(),
            payload: vec![1, 2, 3],
        }
    }

    #[tokio::test]
    async fn the_fake_records_and_fails_at_message_n() {
        let fake = RecordingProducer::failing_at(2, FakeFailure::TimedOut);
        fake.send_all(vec![record("a"), record("b")])
            .await
            .expect("first two");
        let error = fake
            .send_all(vec![record("c"), record("d")])
            .await
            .expect_err("third fails");
        assert_eq!((error.stage(), error.tag()), ("delivery", "timed_out"));
        assert_eq!(fake.sent(), vec![record("a"), record("b")]);

        let full = RecordingProducer::failing_at(0, FakeFailure::QueueFull);
        let error = full.send_all(vec![record("a")]).await.expect_err("full");
        assert_eq!((error.stage(), error.tag()), ("enqueue", "queue_full"));
    }

    #[test]
    fn producer_settings_are_safe() {
        let config = ProducerConfig {
            compression: Compression::Zstd,
            ..ProducerConfig::default()
        };
        let settings = producer_defaults(&config);
        let get = |key: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("compression.type"), Some("zstd"));
        assert_eq!(get("message.timeout.ms"), Some("5000"));
    }

    #[test]
    fn a_producer_is_created_without_a_broker() {
        let kafka = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            options: Vec::new(),
        };
        KafkaProducer::new(&kafka, &ProducerConfig::default(), "t").expect("lazy connect");
    }
}
