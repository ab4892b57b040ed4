//! Reading ranges of a topic's partitions outside any consumer group: how a
//! service rebuilds a partition's state after an assignment, before it
//! processes any of the partition's records (enrich's token store from the
//! compacted `lumen.shares`; the recent event ids of `lumen.raw` or
//! `lumen.enriched` before the group's committed offset, see
//! [`crate::dedupe`]).
//!
//! All of this blocks (a short-lived consumer with manual assignment, read
//! committed: an aborted record never counts); callers run it on
//! `spawn_blocking`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::kafka::ConsumerErrors;

/// How long one poll of the reading consumer waits for records.
const POLL: Duration = Duration::from_millis(200);
/// Bound of one metadata request: a broker that does not answer fails the
/// read (retried by the caller, and logged) instead of holding it for the
/// whole deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a read that has not finished says which partitions it is
/// still reading (a restore holds its caller: it must not be silent).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A Kafka call failed.
    #[error("kafka {operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// Partitions were not read to their end within the deadline.
    #[error("reading partitions {partitions:?} of {topic} took longer than {timeout_ms} ms")]
    Timeout {
        /// Topic being read.
        topic: String,
        /// Partitions not read to their end in time.
        partitions: Vec<i32>,
        /// The deadline.
        timeout_ms: u128,
    },
}

fn failed(operation: &'static str) -> impl FnOnce(KafkaError) -> ReadError {
    move |source| ReadError::Kafka { operation, source }
}

/// The reading consumer's context: the end of a partition is how a read
/// knows it is done, not an error to report (rdkafka's default logs every
/// client error at ERROR, three lines per read), and the other errors are
/// logged without flooding.
#[derive(Default)]
struct ReaderContext {
    errors: ConsumerErrors,
}

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, _reason: &str) {
        self.errors.log(&error);
    }
}

impl ConsumerContext for ReaderContext {}

/// A partition's range to read: from `start` to `end` (exclusive), or to
/// the partition's end when `end` is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// The partition.
    pub partition: i32,
    /// Where to start.
    pub start: Offset,
    /// Exclusive end offset; the partition's end when `None`.
    pub end: Option<i64>,
}

/// Reads ranges of partitions, several at once.
pub struct RangeReader {
    consumer: BaseConsumer<ReaderContext>,
    deadline: Duration,
}

impl RangeReader {
    /// A reading consumer: manual assignment under `group_id` (never
    /// joined, never committed: the id only names the client to the
    /// broker), `read_committed`, end of partition reported. Each read
    /// gives up after `deadline`.
    pub fn new(kafka: &KafkaConfig, group_id: &str, deadline: Duration) -> Result<Self, ReadError> {
        let consumer = kafka
            .client_config(&[
                ("group.id", group_id),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                ("auto.offset.reset", "earliest"),
                // The end of a partition shows as an empty fetch, which the
                // broker holds this long (500 ms by default): every read
                // partition, even an empty one, would pay it.
                ("fetch.wait.max.ms", "20"),
            ])
            .create_with_context(ReaderContext::default())
            .map_err(failed("create range reader"))?;
        Ok(Self { consumer, deadline })
    }

    /// How many partitions `topic` has; 0 if it does not exist.
    pub fn partitions(&self, topic: &str) -> Result<usize, ReadError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.deadline)
            .map_err(failed("fetch metadata"))?;
        Ok(metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    }

    /// Calls `each` with the partition and payload of the records at up to
    /// `window` offsets before each partition's offset in `before` (a
    /// group's next offset to read), all partitions read at once.
    pub fn tails(
        &self,
        topic: &str,
        before: &HashMap<i32, i64>,
        window: usize,
        each: impl FnMut(i32, &[u8]),
    ) -> Result<(), ReadError> {
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        let mut ranges = Vec::new();
        for (&partition, &end) in before {
            let start = end.saturating_sub(window).max(0);
            if start >= end {
                continue;
            }
            let (low, _) = self
                .consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(failed("fetch watermarks"))?;
            let start = start.max(low);
            if start < end {
                ranges.push(Range {
                    partition,
                    start: Offset::Offset(start),
                    end: Some(end),
                });
            }
        }
        self.read(topic, ranges, each)
    }

    /// Calls `each` with the partition and payload of every record of
    /// `ranges`, oldest first within a partition, all partitions read at
    /// once: a restore costs one round of fetches, not one per partition.
    pub fn read(
        &self,
        topic: &str,
        ranges: Vec<Range>,
        mut each: impl FnMut(i32, &[u8]),
    ) -> Result<(), ReadError> {
        if ranges.is_empty() {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        for range in &ranges {
            assignment
                .add_partition_offset(topic, range.partition, range.start)
                .map_err(failed("assign"))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(failed("assign"))?;
        // librdkafka keeps a partition paused across assignments: one
        // that finished first in an earlier read would never be read.
        self.consumer
            .resume(&assignment)
            .map_err(failed("resume"))?;
        let mut reading: HashMap<i32, Option<i64>> = ranges
            .into_iter()
            .map(|range| (range.partition, range.end))
            .collect();
        let started = Instant::now();
        let mut next_progress = started + PROGRESS_EVERY;
        let result = loop {
            if reading.is_empty() {
                break Ok(());
            }
            let now = Instant::now();
            let elapsed = now.duration_since(started);
            if elapsed > self.deadline {
                break Err(ReadError::Timeout {
                    topic: topic.to_owned(),
                    partitions: unfinished(&reading),
                    timeout_ms: self.deadline.as_millis(),
                });
            }
            if now >= next_progress {
                tracing::warn!(
                    topic,
                    partitions = ?unfinished(&reading),
                    ?elapsed,
                    "still reading partitions"
                );
                next_progress = now + PROGRESS_EVERY;
            }
            match self.consumer.poll(POLL) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.finish(topic, partition, &mut reading)?;
                }
                Some(Err(error)) if crate::kafka::is_transient(&error) => {
                    tracing::debug!(%error, topic, "transient error while reading");
                }
                Some(Err(error)) => break Err(failed("read")(error)),
                Some(Ok(message)) => {
                    let partition = message.partition();
                    // Records after a finished partition's end were
                    // prefetched before it was paused.
                    let Some(&end) = reading.get(&partition) else {
                        continue;
                    };
                    let offset = message.offset();
                    if end.is_none_or(|end| offset < end)
                        && let Some(payload) = message.payload()
                    {
                        each(partition, payload);
                    }
                    if end.is_some_and(|end| offset + 1 >= end) {
                        self.finish(topic, partition, &mut reading)?;
                    }
                }
            }
        };
        self.consumer.unassign().map_err(failed("unassign"))?;
        result
    }

    /// Stops reading a partition that reached its end: paused, so a
    /// backlog after the end (records not processed yet) is not fetched for
    /// nothing while the others finish.
    fn finish(
        &self,
        topic: &str,
        partition: i32,
        reading: &mut HashMap<i32, Option<i64>>,
    ) -> Result<(), ReadError> {
        if reading.remove(&partition).is_some() && !reading.is_empty() {
            let mut done = TopicPartitionList::new();
            done.add_partition(topic, partition);
            self.consumer
                .pause(&done)
                .map_err(failed("pause a partition read to its end"))?;
        }
        Ok(())
    }
}

/// The partitions of a read still being read, in order.
fn unfinished(reading: &HashMap<i32, Option<i64>>) -> Vec<i32> {
    let mut partitions: Vec<i32> = reading.keys().copied().collect();
    partitions.sort_unstable();
    partitions
}
