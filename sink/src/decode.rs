//! Kafka records become rows when their batch is delivered, not when they
//! are read. The Avro bytes are a fraction of a decoded event's size (about
//! 300 bytes against 1.7 KiB of owned strings), so the read-ahead budget
//! holds that many more records in the same memory; and decoding runs in
//! the delivery tasks, one per partition on every core, instead of in the
//! single reading loop, which it used to hold to ~50 000 records/s. A row
//! is decoded as it is written into the insert and dropped right after, so
//! a batch in flight holds its bytes, never its decoded rows. Decoding is
//! deterministic: a retried or split insert sees the same rows and the same
//! undecodable records.

use lumen_schemas::{Codec, EnrichedEvent};

use crate::row::Record;

/// A Kafka record as read, kept undecoded until its batch is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    /// Kafka offset.
    pub offset: i64,
    /// Kafka key, for a dead letter.
    pub key: Option<Vec<u8>>,
    /// The Avro single-object payload.
    pub payload: Vec<u8>,
}

/// A record of a batch that will never be a row: it does not decode, or
/// ClickHouse refused it; either way a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Index in the batch's records.
    pub index: usize,
    /// Bounded label.
    pub reason: &'static str,
    /// The decoder's or ClickHouse's full message.
    pub detail: String,
}

/// Decodes payloads of `lumen.enriched` into records ready to become rows.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec<EnrichedEvent>,
}

impl Decoder {
    /// A decoder of every schema version this build knows.
    pub fn new() -> lumen_schemas::Result<Self> {
        Ok(Self {
            codec: Codec::new()?,
        })
    }

    /// The record in `payload`, or why there is none (a bounded reason and
    /// the full message).
    pub fn decode(&self, payload: &[u8]) -> Result<Record, (&'static str, String)> {
        let event = self
            .codec
            .decode(payload)
            .map_err(|e| (e.reason(), e.to_string()))?;
        Record::new(event).map_err(|e| ("invalid_event_id", e.to_string()))
    }

    /// The rows of `records`, the records at `first_index..` of their batch.
    pub fn rows<'a>(&'a self, records: &'a [Consumed], first_index: usize) -> Rows<'a> {
        Rows {
            decoder: self,
            records: records.iter(),
            index: first_index,
            undecodable: Vec::new(),
        }
    }
}

/// The rows of a run of consumed records, decoded one at a time; records
/// that do not decode are skipped and remembered.
#[derive(Debug)]
pub struct Rows<'a> {
    decoder: &'a Decoder,
    records: std::slice::Iter<'a, Consumed>,
    index: usize,
    undecodable: Vec<Rejected>,
}

impl Rows<'_> {
    /// The records skipped so far (all of them, once iterated to the end).
    pub fn into_undecodable(self) -> Vec<Rejected> {
        self.undecodable
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = (&'a Consumed, Record);

    fn next(&mut self) -> Option<Self::Item> {
        for consumed in self.records.by_ref() {
            let index = self.index;
            self.index += 1;
            match self.decoder.decode(&consumed.payload) {
                Ok(record) => return Some((consumed, record)),
                Err((reason, detail)) => self.undecodable.push(Rejected {
                    index,
                    reason,
                    detail,
                }),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::sample;

    fn consumed(offset: i64, payload: Vec<u8>) -> Consumed {
        Consumed {
            offset,
            key: None,
            payload,
        }
    }

    #[test]
    fn rows_skip_and_remember_what_does_not_decode() {
        let codec = Codec::<EnrichedEvent>::new().expect("codec");
        let good = |n: u64| {
            codec
                .encode(&sample::event(n, 1_764_000_000_000))
                .expect("encode")
        };
        let mut bad_id = sample::event(9, 1_764_000_000_000);
        bad_id.event_id = "not-a-uuid".to_owned();
        let records = [
            consumed(10, good(0)),
            consumed(11, b"certainly not avro".to_vec()),
            consumed(12, good(2)),
            consumed(13, codec.encode(&bad_id).expect("encode")),
        ];
        let decoder = Decoder::new().expect("decoder");
        let mut rows = decoder.rows(&records[1..], 1);
        let offsets: Vec<i64> = rows.by_ref().map(|(c, _)| c.offset).collect();
        assert_eq!(offsets, vec![12]);
        let skipped: Vec<(usize, &str)> = rows
            .into_undecodable()
            .iter()
            .map(|u| (u.index, u.reason))
            .collect();
        assert_eq!(skipped, vec![(1, "bad_magic"), (3, "invalid_event_id")]);
    }
}
