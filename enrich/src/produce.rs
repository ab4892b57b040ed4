//! The records a batch writes: enriched events, share records and
//! dead-letter records, built as owned [`Output`]s, then sent in one
//! transaction together with the consumer's offsets.
//!
//! Dead-letter records keep the original key and payload and say why in
//! headers (`lumen.reason`, `lumen.error`, `lumen.source.*`).

use lumen_runtime::TopicsConfig;
use lumen_schemas::{Codec, EnrichedEvent, ShareRecord};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::error::{Error, Result};
use crate::transaction::TransactionalProducer;

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

/// One record to write.
#[derive(Debug, Clone)]
pub struct Output {
    /// Target topic.
    pub destination: Destination,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Vec<u8>,
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
    pub fn enriched(&self, key: Option<&[u8]>, event: &EnrichedEvent) -> Result<Output> {
        Ok(Output {
            destination: Destination::Enriched,
            key: key.map(<[u8]>::to_vec),
            payload: self.enriched.encode(event).map_err(Error::Encode)?,
            partition: None,
            headers: Vec::new(),
        })
    }

    /// A share record, keyed by token, in the raw record's partition.
    pub fn share(&self, partition: i32, record: &ShareRecord) -> Result<Output> {
        Ok(Output {
            destination: Destination::Shares,
            key: Some(record.token.as_bytes().to_vec()),
            payload: self.shares.encode(record).map_err(Error::Encode)?,
            partition: Some(partition),
            headers: Vec::new(),
        })
    }
}

/// A dead-letter record: the original key and payload, the reason in
/// headers.
pub fn dead_letter(
    key: Option<&[u8]>,
    payload: &[u8],
    error: &Error,
    source: SourcePosition<'_>,
) -> Output {
    Output {
        destination: Destination::DeadLetter,
        key: key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
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

/// Writes `outputs` and commits `offsets` (next offsets to read) for
/// `group` in one transaction. On error the transaction has been aborted
/// (unless the producer is fenced, see `transaction::is_fatal`).
pub async fn write_batch(
    producer: &mut TransactionalProducer,
    topics: &TopicsConfig,
    outputs: &[Output],
    offsets: TopicPartitionList,
    group: ConsumerGroupMetadata,
) -> Result<()> {
    let mut transaction = producer.begin()?;
    let sent = async {
        for output in outputs {
            let topic = match output.destination {
                Destination::Enriched => &topics.enriched,
                Destination::Shares => &topics.shares,
                Destination::DeadLetter => &topics.dlq,
            };
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&output.payload);
            if let Some(key) = &output.key {
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
            transaction.send(record)?;
        }
        transaction.send_offsets(offsets, group).await
    }
    .await;
    match sent {
        Ok(()) => transaction.commit().await,
        Err(error) => {
            transaction.abort().await?;
            Err(error)
        }
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
        assert_eq!(output.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(output.payload, b"garbage");
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
