//! The batch path's baseline: a bare rdkafka producer with ingest's own
//! settings (`producer_defaults`: idempotent, `acks=all`, lz4, linger 5 ms,
//! the same queue bound) sending ingest's records as fast as librdkafka
//! takes them, counting only what Kafka acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lumen_ingest::config::ProducerConfig;
use lumen_ingest::produce::{Record, producer_defaults};
use lumen_runtime::KafkaConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::servers::cpu_time;

/// Longest wait for the records still queued when the measurement ends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Back-off when the queue is full, so librdkafka's threads get the CPU.
const QUEUE_FULL_PAUSE: Duration = Duration::from_micros(200);

/// Counts delivery reports.
#[derive(Default)]
struct Acks {
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the bare producer achieved.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Records acknowledged within the measured time, per second.
    pub per_second: f64,
    /// Records Kafka refused or timed out, over the whole run.
    pub failed: usize,
    /// CPU time of this process (librdkafka's threads and the sending
    /// loop; nothing else runs meanwhile) per acknowledged record.
    pub cpu_per_record: Duration,
}

/// Sends `records` round and round to `topic` for `duration` (blocking).
pub fn run(brokers: &str, topic: &str, records: &[Record], duration: Duration) -> Throughput {
    let defaults = producer_defaults(&ProducerConfig::default());
    let defaults: Vec<(&str, &str)> = defaults
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        options: Vec::new(),
    };
    let producer: ThreadedProducer<Acks> = kafka
        .client_config(&defaults)
        .create_with_context(Acks::default())
        .expect("producer");
    let send = |record: &Record| loop {
        let message = BaseRecord::to(topic)
            .key(record.key.as_bytes())
            .payload(record.payload.as_slice());
        match producer.send(message) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(QUEUE_FULL_PAUSE);
            }
            Err((error, _)) => panic!("cannot enqueue: {error}"),
        }
    };

    // Connection, metadata and producer id, as ingest has them before it is ready.
    records.iter().for_each(send);
    producer.flush(FLUSH_TIMEOUT).expect("warm-up flush");

    let acks = producer.context();
    let before = acks.delivered.load(Ordering::Relaxed);
    let cpu_before = cpu_time("self");
    let started = Instant::now();
    for record in records.iter().cycle() {
        send(record);
        if started.elapsed() >= duration {
            break;
        }
    }
    let delivered = acks.delivered.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed();
    let cpu = cpu_time("self") - cpu_before;
    producer.flush(FLUSH_TIMEOUT).expect("final flush");
    Throughput {
        per_second: delivered as f64 / elapsed.as_secs_f64(),
        failed: acks.failed.load(Ordering::Relaxed),
        cpu_per_record: cpu / u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
    }
}
