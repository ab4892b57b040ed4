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

use std::time::{Duration, Instant};

use lumen_runtime::{KafkaConfig, TopicsConfig};
use lumen_schemas::{Codec, RawEvent, ShareRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::{Error, Result};

/// How long one poll of the restore consumer waits for records.
const POLL: Duration = Duration::from_millis(200);

/// Reads partitions of a topic from a start offset to an end.
pub struct Restorer {
    consumer: BaseConsumer,
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
            .create()
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

    /// Every share record of `partition` of `topic`, oldest first.
    pub fn shares(&self, topic: &str, partition: i32) -> Result<Vec<ShareRecord>> {
        let codec = Codec::<ShareRecord>::new().map_err(Error::Encode)?;
        let mut shares = Vec::new();
        self.read(topic, partition, Offset::Beginning, None, |payload| {
            // A record that does not decode was never written by us; it is
            // skipped, not fatal: the share it held resolves as address_bar.
            match codec.decode(payload) {
                Ok(record) => shares.push(record),
                Err(error) => {
                    tracing::warn!(%error, topic, partition, "skipping undecodable share record")
                }
            }
        })?;
        Ok(shares)
    }

    /// The event ids of up to `window` raw records before `committed` (the
    /// group's next offset to read) in `partition` of `topic`.
    pub fn recent_ids(
        &self,
        topic: &str,
        partition: i32,
        committed: i64,
        window: usize,
    ) -> Result<Vec<String>> {
        let (low, _) = self
            .consumer
            .fetch_watermarks(topic, partition, self.deadline)
            .map_err(Error::kafka("fetch watermarks"))?;
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        let start = committed.saturating_sub(window).max(low);
        if start >= committed {
            return Ok(Vec::new());
        }
        let codec = Codec::<RawEvent>::new().map_err(Error::Encode)?;
        let mut ids = Vec::new();
        self.read(
            topic,
            partition,
            Offset::Offset(start),
            Some(committed),
            |payload| {
                // Undecodable records went to the dead-letter topic: no id.
                if let Ok(raw) = codec.decode(payload) {
                    ids.push(raw.event_id);
                }
            },
        )?;
        Ok(ids)
    }

    /// Calls `each` with the payload of every record from `start` until the
    /// end of the partition or offset `end` (exclusive).
    fn read(
        &self,
        topic: &str,
        partition: i32,
        start: Offset,
        end: Option<i64>,
        mut each: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, start)
            .map_err(Error::kafka("assign"))?;
        self.consumer
            .assign(&assignment)
            .map_err(Error::kafka("assign"))?;
        let deadline = Instant::now() + self.deadline;
        let result = loop {
            if Instant::now() > deadline {
                break Err(Error::RestoreTimeout {
                    topic: topic.to_owned(),
                    partition,
                    timeout_ms: self.deadline.as_millis(),
                });
            }
            match self.consumer.poll(POLL) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break Ok(()),
                Some(Err(error)) if lumen_runtime::kafka::is_transient(&error) => {
                    tracing::debug!(%error, topic, partition, "transient error while restoring");
                }
                Some(Err(error)) => break Err(Error::kafka("restore")(error)),
                Some(Ok(message)) => {
                    if end.is_some_and(|end| message.offset() >= end) {
                        break Ok(());
                    }
                    if let Some(payload) = message.payload() {
                        each(payload);
                    }
                    if end.is_some_and(|end| message.offset() + 1 >= end) {
                        break Ok(());
                    }
                }
            }
        };
        self.consumer.unassign().map_err(Error::kafka("unassign"))?;
        result
    }
}
