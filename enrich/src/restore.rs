//! Rebuilding a partition's state after an assignment, before any of its
//! records is processed: the token store from the partition's share records
//! in the compacted `lumen.shares` (read to its end), and the recent event
//! ids from the tail of `lumen.raw` before the group's committed offset, so
//! a tracker retry of an event processed before a restart is still caught.
//!
//! Also checks at start-up that the topics allow this: share records are
//! written to the partition of the raw record they come from, so
//! `lumen.shares` needs as many partitions as `lumen.raw`.
//!
//! All of this blocks (a short-lived consumer with manual assignment, read
//! committed); callers run it on `spawn_blocking`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lumen_runtime::{KafkaConfig, TopicsConfig};
use lumen_schemas::{Codec, RawEvent, ShareRecord};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::error::{Error, Result};

/// How long one poll of the restore consumer waits for records.
const POLL: Duration = Duration::from_millis(200);
/// Bound of one metadata request of a restore: a broker that does not
/// answer fails the attempt (retried by the caller, and logged) instead of
/// holding the loop for the whole restore deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a restore that has not finished says which partitions it is
/// still reading (a restore holds the loop: it must not be silent).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The restore consumer's context: the end of a partition is how a restore
/// knows it is done, not an error to report (rdkafka's default logs every
/// client error at ERROR, three lines per restore).
struct RestoreContext;

impl ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "restore consumer error");
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// Reads partitions of a topic from a start offset to an end.
pub struct Restorer {
    consumer: BaseConsumer<RestoreContext>,
    deadline: Duration,
}

impl Restorer {
    /// A restore consumer: manual assignment, no group commits,
    /// `read_committed` (aborted shares never count), end of partition
    /// reported. Each restore gives up after `deadline`.
    pub fn new(kafka: &KafkaConfig, deadline: Duration) -> Result<Self> {
        let consumer = kafka
            .client_config(&[
                ("group.id", "lumen-enrich-restore"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                ("auto.offset.reset", "earliest"),
                // The end of a partition shows as an empty fetch, which the
                // broker holds this long (500 ms by default): every restored
                // partition, even an empty one, would pay it.
                ("fetch.wait.max.ms", "20"),
            ])
            .create_with_context(RestoreContext)
            .map_err(Error::kafka("create restore consumer"))?;
        Ok(Self { consumer, deadline })
    }

    /// Fails unless both topics exist and `shares` has as many partitions
    /// as `raw`.
    pub fn check_topics(&self, topics: &TopicsConfig) -> Result<()> {
        let count = |topic: &str| -> Result<usize> {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), self.deadline)
                .map_err(Error::kafka("fetch metadata"))?;
            let partitions = metadata
                .topics()
                .first()
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if partitions == 0 {
                return Err(Error::Config(format!(
                    "topic `{topic}` does not exist: create it (see deploy/) or fix the --topic-* flags"
                )));
            }
            Ok(partitions)
        };
        let raw = count(&topics.raw)?;
        let shares = count(&topics.shares)?;
        if raw != shares {
            return Err(Error::Config(format!(
                "topic `{}` has {shares} partitions but `{}` has {raw}: share records follow their raw partition, give both the same count",
                topics.shares, topics.raw
            )));
        }
        for topic in [&topics.enriched, &topics.dlq] {
            count(topic)?;
        }
        Ok(())
    }

    /// Calls `each` with every share record of `partitions` of `topic`,
    /// oldest first within a partition.
    pub fn shares(
        &self,
        topic: &str,
        partitions: &[i32],
        mut each: impl FnMut(i32, ShareRecord),
    ) -> Result<()> {
        let codec = Codec::<ShareRecord>::new().map_err(Error::Encode)?;
        let ranges = partitions
            .iter()
            .map(|&partition| (partition, Offset::Beginning, None))
            .collect();
        self.read(topic, ranges, |partition, payload| {
            // A record that does not decode was never written by us; it is
            // skipped, not fatal: the share it held resolves as address_bar.
            match codec.decode(payload) {
                Ok(record) => each(partition, record),
                Err(error) => {
                    tracing::warn!(%error, topic, partition, "skipping undecodable share record")
                }
            }
        })
    }

    /// Calls `each` with the event ids of up to `window` raw records before
    /// each partition's committed offset (the group's next offset to read)
    /// in `topic`.
    pub fn recent_ids(
        &self,
        topic: &str,
        committed: &HashMap<i32, i64>,
        window: usize,
        mut each: impl FnMut(i32, String),
    ) -> Result<()> {
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        let mut ranges = Vec::new();
        for (&partition, &committed) in committed {
            let (low, _) = self
                .consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(Error::kafka("fetch watermarks"))?;
            let start = committed.saturating_sub(window).max(low);
            if start < committed {
                ranges.push((partition, Offset::Offset(start), Some(committed)));
            }
        }
        let codec = Codec::<RawEvent>::new().map_err(Error::Encode)?;
        self.read(topic, ranges, |partition, payload| {
            // Undecodable records went to the dead-letter topic: no id.
            if let Ok(raw) = codec.decode(payload) {
                each(partition, raw.event_id);
            }
        })
    }

    /// Calls `each` with the partition and payload of every record of
    /// `ranges` (partition, start, exclusive end or the partition's end),
    /// all partitions read at once: a restore costs one round of fetches,
    /// not one per partition.
    fn read(
        &self,
        topic: &str,
        ranges: Vec<(i32, Offset, Option<i64>)>,
        mut each: impl FnMut(i32, &[u8]),
    ) -> Result<()> {
        if ranges.is_empty() {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        for &(partition, start, _) in &ranges {
            assignment
                .add_partition_offset(topic, partition, start)
                .map_err(Error::kafka("assign"))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(Error::kafka("assign"))?;
        // librdkafka keeps a partition paused across assignments: one
        // that finished first in an earlier restore would never be read.
        self.consumer
            .resume(&assignment)
            .map_err(Error::kafka("resume"))?;
        let mut reading: HashMap<i32, Option<i64>> = ranges
            .into_iter()
            .map(|(partition, _, end)| (partition, end))
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
                break Err(Error::RestoreTimeout {
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
                    "restore still reading partitions"
                );
                next_progress = now + PROGRESS_EVERY;
            }
            match self.consumer.poll(POLL) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.finish(topic, partition, &mut reading)?;
                }
                Some(Err(error)) if lumen_runtime::kafka::is_transient(&error) => {
                    tracing::debug!(%error, topic, "transient error while restoring");
                }
                Some(Err(error)) => break Err(Error::kafka("restore")(error)),
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
        self.consumer.unassign().map_err(Error::kafka("unassign"))?;
        result
    }

    /// Stops reading a partition that reached its end: paused, so a
    /// backlog after the end (a raw partition's unprocessed records) is
    /// not fetched for nothing while the others finish.
    fn finish(
        &self,
        topic: &str,
        partition: i32,
        reading: &mut HashMap<i32, Option<i64>>,
    ) -> Result<()> {
        if reading.remove(&partition).is_some() && !reading.is_empty() {
            let mut done = TopicPartitionList::new();
            done.add_partition(topic, partition);
            self.consumer
                .pause(&done)
                .map_err(Error::kafka("pause restored partition"))?;
        }
        Ok(())
    }
}

/// The partitions of a restore still being read, in order.
fn unfinished(reading: &HashMap<i32, Option<i64>>) -> Vec<i32> {
    let mut partitions: Vec<i32> = reading.keys().copied().collect();
    partitions.sort_unstable();
    partitions
}
