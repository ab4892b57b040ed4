//! Kafka records become rows when their batch is delivered, not when they
//! are read. The Avro bytes are a fraction of a decoded event's size (about
//! 300 bytes against 1.7 KiB of owned strings), so the read-ahead budget
//! holds that many more records in the same memory; and decoding runs in
//! the delivery tasks, one per partition on every core, instead of in the
//! single reading loop, which it used to hold to ~50 000 records/s. A row
//! is written into the insert straight from the Avro bytes (`transcode.rs`),
//! so a batch in flight holds its bytes, never decoded rows. Decoding is
//! deterministic: a retried or split insert sees the same rows and the same
//! undecodable records.

use std::ops::Range;

use lumen_schemas::codec::split_header;
use lumen_schemas::{Codec, EnrichedEvent};

use crate::transcode::Transcoder;

/// A Kafka record as read, kept undecoded until its batch is delivered;
/// borrowed from its [`Records`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Consumed<'a> {
    /// Kafka offset.
    pub offset: i64,
    /// Kafka key, for a dead letter.
    pub key: Option<&'a [u8]>,
    /// The Avro single-object payload.
    pub payload: &'a [u8],
}

/// Records of one partition in offset order, their keys and payloads in
/// one buffer. Two allocations per record (key and payload), made on the
/// reading loop and freed on a delivery task's thread, were about a sixth
/// of the sink's CPU (perf during `make bench-sink`); a batch now grows one
/// buffer.
#[derive(Debug, Default)]
pub struct Records {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

/// Where a record lies in [`Records::bytes`]: its key, if any, from
/// `start` to `key_end`, then its payload up to `end`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    start: usize,
    key_end: Option<usize>,
    end: usize,
}

impl Records {
    /// Appends a record (copying its key and payload).
    pub fn push(&mut self, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let start = self.bytes.len();
        let key_end = key.map(|key| {
            self.bytes.extend_from_slice(key);
            self.bytes.len()
        });
        self.bytes.extend_from_slice(payload);
        self.entries.push(Entry {
            offset,
            start,
            key_end,
            end: self.bytes.len(),
        });
    }

    /// The record at `index`; panics past the end, like a slice.
    pub fn at(&self, index: usize) -> Consumed<'_> {
        let entry = self.entries[index];
        let payload_start = entry.key_end.unwrap_or(entry.start);
        Consumed {
            offset: entry.offset,
            key: entry
                .key_end
                .map(|key_end| &self.bytes[entry.start..key_end]),
            payload: &self.bytes[payload_start..entry.end],
        }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = Consumed<'_>> {
        (0..self.len()).map(|index| self.at(index))
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> FromIterator<Consumed<'a>> for Records {
    fn from_iter<I: IntoIterator<Item = Consumed<'a>>>(records: I) -> Self {
        let mut all = Self::default();
        for record in records {
            all.push(record.offset, record.key, record.payload);
        }
        all
    }
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

/// Turns payloads of `lumen.enriched` into RowBinary rows of `events`.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec<EnrichedEvent>,
    transcoder: Transcoder,
}

impl Decoder {
    /// A decoder of every schema version this build knows.
    pub fn new() -> lumen_schemas::Result<Self> {
        Ok(Self {
            codec: Codec::new()?,
            transcoder: Transcoder::new()?,
        })
    }

    /// Appends the row of `payload` to `out`, or says why there is none (a
    /// bounded reason and the full message) and leaves `out` as it was.
    pub fn row(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), (&'static str, String)> {
        let rejected = |e: lumen_schemas::Error| (e.reason(), e.to_string());
        let (fingerprint, body) = split_header(payload).map_err(rejected)?;
        if fingerprint == self.codec.fingerprint() {
            return self.transcoder.row(body, out);
        }
        // Another schema version (or none this build knows): resolved to
        // the current one by the codec, then written like any other.
        let event = self.codec.decode(payload).map_err(rejected)?;
        let current = self.codec.encode(&event).map_err(rejected)?;
        let (_, body) = split_header(&current).map_err(rejected)?;
        self.transcoder.row(body, out)
    }

    /// The rows of the records at `range` of a batch's `records`.
    pub fn rows<'a>(&'a self, records: &'a Records, range: Range<usize>) -> Rows<'a> {
        Rows {
            decoder: self,
            records,
            range,
            undecodable: Vec::new(),
        }
    }
}

/// The rows of a run of consumed records, written one at a time; records
/// that do not decode are skipped and remembered.
#[derive(Debug)]
pub struct Rows<'a> {
    decoder: &'a Decoder,
    records: &'a Records,
    range: Range<usize>,
    undecodable: Vec<Rejected>,
}

impl<'a> Rows<'a> {
    /// Appends the next record's row to `out` and returns the record;
    /// `None` once every record was read.
    pub fn write_next(&mut self, out: &mut Vec<u8>) -> Option<Consumed<'a>> {
        for index in self.range.by_ref() {
            let consumed = self.records.at(index);
            match self.decoder.row(consumed.payload, out) {
                Ok(()) => return Some(consumed),
                Err((reason, detail)) => self.undecodable.push(Rejected {
                    index,
                    reason,
                    detail,
                }),
            }
        }
        None
    }

    /// The records skipped so far (all of them, once read to the end).
    pub fn into_undecodable(self) -> Vec<Rejected> {
        self.undecodable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::sample;

    #[test]
    fn records_keep_keys_and_payloads_apart() {
        let mut records = Records::default();
        records.push(7, Some(b"key"), b"payload");
        records.push(8, None, b"");
        records.push(9, Some(b""), b"x");
        let read: Vec<Consumed<'_>> = records.iter().collect();
        assert_eq!(
            read,
            vec![
                Consumed {
                    offset: 7,
                    key: Some(b"key"),
                    payload: b"payload"
                },
                Consumed {
                    offset: 8,
                    key: None,
                    payload: b""
                },
                Consumed {
                    offset: 9,
                    key: Some(b""),
                    payload: b"x"
                },
            ]
        );
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
        let payloads = [
            good(0),
            b"certainly not avro".to_vec(),
            good(2),
            codec.encode(&bad_id).expect("encode"),
        ];
        let records: Records = payloads
            .iter()
            .zip(10..)
            .map(|(payload, offset)| Consumed {
                offset,
                key: None,
                payload,
            })
            .collect();
        let decoder = Decoder::new().expect("decoder");
        let mut rows = decoder.rows(&records, 1..4);
        let mut out = Vec::new();
        let offsets: Vec<i64> = std::iter::from_fn(|| rows.write_next(&mut out))
            .map(|c| c.offset)
            .collect();
        assert_eq!(offsets, vec![12]);
        let skipped: Vec<(usize, &str)> = rows
            .into_undecodable()
            .iter()
            .map(|u| (u.index, u.reason))
            .collect();
        assert_eq!(skipped, vec![(1, "bad_magic"), (3, "invalid_event_id")]);
    }
}
