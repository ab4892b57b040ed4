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

/// Records of one partition in offset order, their keys and payloads
/// packed into blocks of [`BLOCK_BYTES`]. Two allocations per record (key
/// and payload), made on the reading loop and freed on a delivery task's
/// thread, were about a sixth of the sink's CPU (perf during `make
/// bench-sink`); and one buffer per batch, grown by doubling, held up to
/// twice its records' bytes, copied at every doubling: the read-ahead is
/// most of the sink's memory, so a batch now takes its bytes plus at most
/// one block.
#[derive(Debug, Default)]
pub struct Records {
    blocks: Vec<Vec<u8>>,
    entries: Vec<Entry>,
}

/// Bytes per block of [`Records`]: a few hundred records of ~300 bytes, so
/// the unused end of a batch's last block is small next to the batch.
const BLOCK_BYTES: usize = 128 * 1024;

/// Where a record lies in [`Records::blocks`]: in block `block`, its key
/// (if any) from `start` to `start + key_len`, then its payload up to
/// `end`. A record is never split across blocks.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    block: u32,
    start: u32,
    key_len: Option<u32>,
    end: u32,
}

impl Records {
    /// Appends a record (copying its key and payload).
    pub fn push(&mut self, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let len = key.map_or(0, <[u8]>::len) + payload.len();
        let fits = self
            .blocks
            .last()
            .is_some_and(|block| block.capacity() - block.len() >= len);
        if !fits {
            // A record larger than a block gets a block of its own size.
            self.blocks.push(Vec::with_capacity(len.max(BLOCK_BYTES)));
        }
        let block_index = self.blocks.len() - 1;
        let block = &mut self.blocks[block_index];
        let start = block.len();
        if let Some(key) = key {
            block.extend_from_slice(key);
        }
        block.extend_from_slice(payload);
        let narrow = |n: usize| u32::try_from(n).expect("a Kafka record is under 4 GiB");
        self.entries.push(Entry {
            offset,
            block: narrow(block_index),
            start: narrow(start),
            key_len: key.map(|key| narrow(key.len())),
            end: narrow(block.len()),
        });
    }

    /// The record at `index`; panics past the end, like a slice.
    pub fn at(&self, index: usize) -> Consumed<'_> {
        let entry = self.entries[index];
        let block = &self.blocks[entry.block as usize];
        let start = entry.start as usize;
        let payload_start = start + entry.key_len.unwrap_or(0) as usize;
        Consumed {
            offset: entry.offset,
            key: entry.key_len.map(|_| &block[start..payload_start]),
            payload: &block[payload_start..entry.end as usize],
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
    fn records_span_blocks_and_a_large_record_gets_its_own() {
        let payload = |n: usize| vec![u8::try_from(n % 251).expect("small"); 1 + n * 997 % 3_000];
        let mut records = Records::default();
        let mut offsets = 0..2_000;
        for n in offsets.by_ref().take(1_000) {
            records.push(n, Some(&n.to_be_bytes()), &payload(n as usize));
        }
        records.push(1_000, None, &vec![7; 3 * BLOCK_BYTES]);
        for n in offsets.skip(1) {
            records.push(n, Some(&n.to_be_bytes()), &payload(n as usize));
        }
        assert!(records.blocks.len() > 10, "the records fill several blocks");
        assert_eq!(records.len(), 2_000);
        for (index, record) in records.iter().enumerate() {
            let n = i64::try_from(index).expect("small");
            assert_eq!(record.offset, n);
            if n == 1_000 {
                assert_eq!((record.key, record.payload.len()), (None, 3 * BLOCK_BYTES));
            } else {
                assert_eq!(record.key, Some(&n.to_be_bytes()[..]));
                assert_eq!(record.payload, payload(index));
            }
        }
        for pair in records.blocks.windows(2) {
            // A block is left for an ordinary one only when a record does
            // not fit in it.
            if pair[1].capacity() == BLOCK_BYTES {
                assert!(
                    pair[0].capacity() - pair[0].len() < 3_008,
                    "no block left half empty"
                );
            }
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
