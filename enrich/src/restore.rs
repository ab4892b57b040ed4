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
//! The reading itself is `lumen_runtime::reader`; it blocks, so callers
//! run it on `spawn_blocking`.

use std::collections::HashMap;
use std::time::Duration;

use lumen_runtime::reader::{Range, RangeReader, ReadError};
use lumen_runtime::{KafkaConfig, TopicsConfig};
use lumen_schemas::{Codec, RawEvent, ShareRecord};
use rdkafka::Offset;

use crate::error::{Error, Result};

/// Reads back a partition's share records and recent event ids.
pub struct Restorer {
    reader: RangeReader,
}

impl From<ReadError> for Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Kafka { operation, source } => Self::Kafka { operation, source },
            ReadError::Timeout {
                topic,
                partitions,
                timeout_ms,
            } => Self::RestoreTimeout {
                topic,
                partitions,
                timeout_ms,
            },
        }
    }
}

impl Restorer {
    /// A restorer whose every restore gives up after `deadline`.
    pub fn new(kafka: &KafkaConfig, deadline: Duration) -> Result<Self> {
        let reader = RangeReader::new(kafka, "lumen-enrich-restore", deadline)?;
        Ok(Self { reader })
    }

    /// Fails unless both topics exist and `shares` has as many partitions
    /// as `raw`.
    pub fn check_topics(&self, topics: &TopicsConfig) -> Result<()> {
        let count = |topic: &str| -> Result<usize> {
            let partitions = self.reader.partitions(topic)?;
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
            .map(|&partition| Range {
                partition,
                start: Offset::Beginning,
                end: None,
            })
            .collect();
        self.reader.read(topic, ranges, |partition, payload| {
            // A record that does not decode was never written by us; it is
            // skipped, not fatal: the share it held resolves as address_bar.
            match codec.decode(payload) {
                Ok(record) => each(partition, record),
                Err(error) => {
                    tracing::warn!(%error, topic, partition, "skipping undecodable share record")
                }
            }
        })?;
        Ok(())
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
        let codec = Codec::<RawEvent>::new().map_err(Error::Encode)?;
        self.reader
            .tails(topic, committed, window, |partition, payload| {
                // Undecodable records went to the dead-letter topic: no id.
                if let Ok(raw) = codec.decode(payload) {
                    each(partition, raw.event_id);
                }
            })?;
        Ok(())
    }
}
