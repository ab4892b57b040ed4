//! The benchmark's Kafka side: private topics deleted afterwards, the
//! preload through ingest's own producer, a watch on a consumer group's
//! committed offsets, and the `read_committed` read-back that checks
//! exactness.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_ingest::config::ProducerConfig;
use lumen_ingest::produce::{KafkaProducer, Producer, Record};
use lumen_runtime::{KafkaConfig, TopicsConfig};
use lumen_schemas::{AvroRecord, Codec, RawEvent};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Partitions of every private topic. DESIGN.md gives no count for
/// `lumen.raw`; deploy/ uses 3, production would use more, and the
/// service must spread over several.
pub const PARTITIONS: i32 = 6;
/// Bound of one metadata or offsets request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Records per `send_all` of the preload, like a large ingest request;
/// below ingest's producer queue bound.
const PRELOAD_CHUNK: usize = 10_000;

/// The private topics of one run.
pub struct Topics {
    admin: AdminClient<DefaultClientContext>,
    /// The service's topics.
    pub service: TopicsConfig,
    /// The baseline's output topic.
    pub copy: String,
}

impl Topics {
    /// Creates the topics, named after `prefix`.
    pub async fn create(brokers: &str, prefix: &str) -> Self {
        let admin: AdminClient<DefaultClientContext> = client(brokers).create().expect("admin");
        let name = |topic: &str| format!("{prefix}.{topic}");
        let topics = Self {
            admin,
            service: TopicsConfig {
                raw: name("raw"),
                enriched: name("enriched"),
                shares: name("shares"),
                dlq: name("dlq"),
            },
            copy: name("copy"),
        };
        let new_topics: Vec<NewTopic> = topics
            .names()
            .into_iter()
            .map(|topic| {
                let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
                if topic == topics.service.shares {
                    new.set("cleanup.policy", "compact")
                } else {
                    new
                }
            })
            .collect();
        let created = topics
            .admin
            .create_topics(&new_topics, &AdminOptions::new())
            .await
            .unwrap_or_else(|e| panic!("cannot reach Kafka at {brokers} (run `make up`): {e}"));
        for result in created {
            result.unwrap_or_else(|(topic, code)| panic!("cannot create {topic}: {code}"));
        }
        topics
    }

    fn names(&self) -> Vec<&str> {
        let service = &self.service;
        vec![
            &service.raw,
            &service.enriched,
            &service.shares,
            &service.dlq,
            &self.copy,
        ]
    }

    /// Deletes the topics.
    pub async fn delete(self) {
        if let Err(error) = self
            .admin
            .delete_topics(&self.names(), &AdminOptions::new())
            .await
        {
            eprintln!("could not delete the bench topics: {error}");
        }
    }
}

fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Writes `events` to `topic` as ingest does: its producer settings, Avro
/// single-object payloads, keyed by [`RawEvent::partition_key`].
pub async fn preload(brokers: &str, topic: &str, events: &[RawEvent]) {
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        options: Vec::new(),
    };
    let producer =
        KafkaProducer::new(&kafka, &ProducerConfig::default(), topic).expect("ingest's producer");
    let codec = Codec::<RawEvent>::new().expect("codec");
    for chunk in events.chunks(PRELOAD_CHUNK) {
        let records = chunk
            .iter()
            .map(|event| Record {
                key: event.partition_key().to_owned(),
                payload: codec.encode(event).expect("encode"),
            })
            .collect();
        producer.send_all(records).await.expect("preloaded");
    }
}

/// Reads a consumer group's committed offsets of one topic without
/// joining the group.
pub struct OffsetWatch {
    consumer: Arc<BaseConsumer>,
    topic: String,
}

impl OffsetWatch {
    /// A watch on `group`'s offsets of `topic`.
    pub fn new(brokers: &str, group: &str, topic: &str) -> Self {
        let consumer = client(brokers)
            .set("group.id", group)
            // read_committed would ask for stable offsets only, and wait
            // while the watched group has a transaction open: always.
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("offsets consumer");
        Self {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
        }
    }

    /// Records of the topic the group has committed, all partitions together.
    pub async fn committed(&self) -> i64 {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            for partition in 0..PARTITIONS {
                list.add_partition(&topic, partition);
            }
            let committed = consumer
                .committed_offsets(list, REQUEST_TIMEOUT)
                .expect("committed offsets");
            committed
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(offset) => offset,
                    _ => 0,
                })
                .sum()
        })
        .await
        .expect("offsets task")
    }

    /// Records in the topic: the sum of its high watermarks.
    pub async fn end(&self) -> i64 {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            (0..PARTITIONS)
                .map(|partition| {
                    consumer
                        .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                        .expect("watermarks")
                        .1
                })
                .sum()
        })
        .await
        .expect("watermarks task")
    }
}

/// What a `read_committed` reader finds in an output topic.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadBack {
    /// Records.
    pub records: usize,
    /// Distinct event ids among them (records that decode as `T`).
    pub distinct_events: usize,
}

/// Reads every committed record of `topic`, decoding each as `T` to count
/// distinct event ids (`event_id` of the record).
pub async fn read_back<T: AvroRecord + Send + 'static>(
    brokers: &str,
    topic: &str,
    event_id: fn(T) -> String,
) -> ReadBack {
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", format!("{topic}.read-back"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("read-back consumer");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(&topic, partition, Offset::Beginning)
                .expect("assignment");
        }
        consumer.assign(&assignment).expect("assign");
        let codec = Codec::<T>::new().expect("codec");
        let mut ids = HashSet::new();
        let mut records = 0;
        let mut at_end = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while at_end.len() < PARTITIONS as usize {
            assert!(Instant::now() < deadline, "reading {topic} back timed out");
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(error)) => panic!("reading {topic} back: {error}"),
                Some(Ok(message)) => {
                    records += 1;
                    if let Some(Ok(record)) = message.payload().map(|p| codec.decode(p)) {
                        ids.insert(event_id(record));
                    }
                }
            }
        }
        ReadBack {
            records,
            distinct_events: ids.len(),
        }
    })
    .await
    .expect("read-back task")
}
