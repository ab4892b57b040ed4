//! The records a batch writes: enriched events, share records and
//! dead-letter records, built as [`Output`]s and sent into the open
//! transaction as they are made, so librdkafka ships them while the loop
//! enriches the next records; the batch's end adds the consumer's offsets
//! and commits.
//!
//! Dead-letter records keep the original key and payload and say why in
//! headers (`lumen.reason`, `lumen.error`, `lumen.source.*`).
//!
//! What the consume loop asks of Kafka besides records sits behind the
//! [`Transport`] trait (Kafka implementation here, a recording fake in the
//! loop's tests), so batching, abort and rewind are tested without a broker.

use lumen_runtime::TopicsConfig;
use lumen_schemas::{Codec, EnrichedEvent, ShareRecord};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::transaction::{Transaction, TransactionalProducer};

/// Header with the bounded reason tag of a dead-letter record.
pub const HEADER_REASON: &str = "lumen.reason";
/// Header with the error message of a dead-letter record.
pub const HEADER_ERROR: &str = "lumen.error";
/// Header with the topic the dead-letter record was read from.
pub const HEADER_SOURCE_TOPIC: &str = "lumen.source.topic";
/// Header with the partition the dead-letter record was read from.
pub const HEADER_SOURCE_PARTITION: &str = "lumen.source.partition";
/// Header with the offset the dead-letter record was read from.
pub const HEADER_SOURCE_OFFSET: &str = "lumen.source.offset";

/// Where an output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// `lumen.enriched`.
    Enriched,
    /// `lumen.shares`.
    Shares,
    /// `lumen.dlq`.
    DeadLetter,
}

/// One record to write. It borrows what it can (the raw record's key and
/// payload, a share's token): librdkafka copies the record when it is
/// sent, so an owned copy here would only be one more allocation.
#[derive(Debug, Clone)]
pub struct Output<'a> {
    /// Target topic.
    pub destination: Destination,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub payload: Cow<'a, [u8]>,
    /// Fixed partition (share records follow their raw partition, so a
    /// partition's shares are restored with it); `None` lets the key decide.
    pub partition: Option<i32>,
    /// Headers (dead-letter records only).
    pub headers: Vec<(&'static str, String)>,
}

/// Where a consumed record came from.
#[derive(Debug, Clone, Copy)]
pub struct SourcePosition<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Encoders for the output types.
pub struct Encoders {
    enriched: Codec<EnrichedEvent>,
    shares: Codec<ShareRecord>,
}

impl Encoders {
    /// Builds both codecs.
    pub fn new() -> Result<Self> {
        Ok(Self {
            enriched: Codec::new().map_err(Error::Encode)?,
            shares: Codec::new().map_err(Error::Encode)?,
        })
    }

    /// An enriched event, under the raw record's key.
    pub fn enriched<'a>(&self, key: Option<&'a [u8]>, event: &EnrichedEvent) -> Result<Output<'a>> {
        Ok(Output {
            destination: Destination::Enriched,
            key,
            payload: Cow::Owned(self.enriched.encode(event).map_err(Error::Encode)?),
            partition: None,
            headers: Vec::new(),
        })
    }

    /// A share record, keyed by token, in the raw record's partition.
    pub fn share<'a>(&self, partition: i32, record: &'a ShareRecord) -> Result<Output<'a>> {
        Ok(Output {
            destination: Destination::Shares,
            key: Some(record.token.as_bytes()),
            payload: Cow::Owned(self.shares.encode(record).map_err(Error::Encode)?),
            partition: Some(partition),
            headers: Vec::new(),
        })
    }
}

/// A dead-letter record: the original key and payload, the reason in
/// headers.
pub fn dead_letter<'a>(
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    error: &Error,
    source: SourcePosition<'_>,
) -> Output<'a> {
    Output {
        destination: Destination::DeadLetter,
        key,
        payload: Cow::Borrowed(payload),
        partition: None,
        headers: vec![
            (HEADER_REASON, error.reason().to_owned()),
            (HEADER_ERROR, error.to_string()),
            (HEADER_SOURCE_TOPIC, source.topic.to_owned()),
            (HEADER_SOURCE_PARTITION, source.partition.to_string()),
            (HEADER_SOURCE_OFFSET, source.offset.to_string()),
        ],
    }
}

/// What the consume loop needs from Kafka besides reading records.
pub trait Transport: Send {
    /// Sends `output` in the open transaction, beginning one if none is
    /// open. Nothing sent is visible to `read_committed` readers before
    /// [`commit`](Self::commit).
    fn send(&mut self, output: &Output<'_>) -> Result<()>;

    /// Commits what was sent since the last commit or abort together with
    /// `next_offsets` (per raw partition, the next offset to read), in one
    /// transaction. On error nothing of it is visible.
    fn commit(
        &mut self,
        next_offsets: &BTreeMap<i32, i64>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Aborts the open transaction, if any: what was sent in it is
    /// discarded.
    fn abort(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Moves reading of each raw partition back to the given offset (after
    /// an aborted transaction).
    fn rewind(&self, offsets: &BTreeMap<i32, i64>) -> impl Future<Output = ()> + Send;

    /// The group's committed offsets of these raw partitions (those that
    /// have one).
    fn committed(
        &self,
        partitions: &[i32],
    ) -> impl Future<Output = Result<HashMap<i32, i64>>> + Send;
}

/// The Kafka transport: the group's consumer and a transactional producer.
pub struct KafkaTransport<C: ConsumerContext + 'static> {
    /// The consumer of the raw topic (for group metadata, seeks, offsets).
    pub consumer: Arc<StreamConsumer<C>>,
    /// The transactional producer.
    pub producer: TransactionalProducer,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Bound of blocking consumer calls.
    pub timeout: Duration,
    /// The transaction records are being sent in.
    pub open: Option<Transaction>,
}

impl<C: ConsumerContext + 'static> KafkaTransport<C> {
    /// Replaces the producer if `result` is an error that made it unusable
    /// and may be recovered from that way.
    async fn renew_after(&mut self, result: Result<()>) -> Result<()> {
        match result {
            Err(error) if self.producer.may_renew(&error) => {
                tracing::warn!(%error, "transactional producer unusable; replacing it");
                self.producer.renew(&error).await?;
                Err(Error::ProducerRenewed(Box::new(error)))
            }
            result => result,
        }
    }
}

impl<C: ConsumerContext + 'static> Transport for KafkaTransport<C> {
    fn send(&mut self, output: &Output<'_>) -> Result<()> {
        let topic = match output.destination {
            Destination::Enriched => &self.topics.enriched,
            Destination::Shares => &self.topics.shares,
            Destination::DeadLetter => &self.topics.dlq,
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(&output.payload);
        if let Some(key) = output.key {
            record = record.key(key);
        }
        if let Some(partition) = output.partition {
            record = record.partition(partition);
        }
        if !output.headers.is_empty() {
            let headers =
                output
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |headers, (key, value)| {
                        headers.insert(Header {
                            key,
                            value: Some(value.as_bytes()),
                        })
                    });
            record = record.headers(headers);
        }
        let transaction = match &mut self.open {
            Some(open) => open,
            open => open.insert(self.producer.begin()?),
        };
        // librdkafka copies the record: `output` may go.
        transaction.send(record)
    }

    async fn commit(&mut self, next_offsets: &BTreeMap<i32, i64>) -> Result<()> {
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Error::Config("the consumer has no group metadata".to_owned()))?;
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in next_offsets {
            offsets
                .add_partition_offset(&self.topics.raw, *partition, Offset::Offset(*next))
                .map_err(Error::kafka("offsets"))?;
        }
        let committed = async {
            let mut transaction = match self.open.take() {
                Some(open) => open,
                None => self.producer.begin()?,
            };
            match transaction.send_offsets(offsets, group).await {
                Ok(()) => transaction.commit().await,
                Err(error) => transaction.abandon(error).await,
            }
        }
        .await;
        self.renew_after(committed).await
    }

    async fn abort(&mut self) -> Result<()> {
        let aborted = match self.open.take() {
            Some(open) => open.abort().await,
            None => Ok(()),
        };
        self.renew_after(aborted).await
    }

    async fn rewind(&self, offsets: &BTreeMap<i32, i64>) {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topics.raw.clone();
        let offsets = offsets.clone();
        let timeout = self.timeout;
        let sought = tokio::task::spawn_blocking(move || {
            for (partition, offset) in offsets {
                // A partition revoked meanwhile restarts from its committed
                // offset at its next owner anyway.
                if let Err(error) =
                    consumer.seek(&topic, partition, Offset::Offset(offset), timeout)
                {
                    tracing::warn!(%error, partition, "cannot rewind partition");
                }
            }
        })
        .await;
        if let Err(error) = sought {
            tracing::warn!(%error, "rewind task failed");
        }
    }

    async fn committed(&self, partitions: &[i32]) -> Result<HashMap<i32, i64>> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&self.topics.raw, *partition);
        }
        let consumer = Arc::clone(&self.consumer);
        let timeout = self.timeout;
        let committed =
            tokio::task::spawn_blocking(move || consumer.committed_offsets(list, timeout))
                .await?
                .map_err(Error::kafka("committed offsets"))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.partition(), offset)),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_keeps_key_and_payload_and_says_why() {
        let error = Error::Decode(lumen_schemas::Error::BadMagic);
        let output = dead_letter(
            Some(b"key"),
            b"garbage",
            &error,
            SourcePosition {
                topic: "lumen.raw",
                partition: 2,
                offset: 41,
            },
        );
        assert_eq!(output.destination, Destination::DeadLetter);
        assert_eq!(output.key, Some(&b"key"[..]));
        assert_eq!(*output.payload, *b"garbage");
        let header = |name: &str| {
            output
                .headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(header(HEADER_REASON), Some("bad_magic"));
        assert_eq!(header(HEADER_SOURCE_TOPIC), Some("lumen.raw"));
        assert_eq!(header(HEADER_SOURCE_PARTITION), Some("2"));
        assert_eq!(header(HEADER_SOURCE_OFFSET), Some("41"));
        assert!(header(HEADER_ERROR).is_some_and(|m| m.contains("C3 01")));
    }
}
