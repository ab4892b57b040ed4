//! Per-partition batching with deterministic boundaries.
//!
//! A batch is a contiguous range of one partition's offsets. Its ClickHouse
//! `insert_deduplication_token` is `topic-partition-first-last`, so a batch
//! replayed after a crash is a no-op in ClickHouse *only if* it is cut at
//! exactly the same offsets. Size bounds are deterministic from the start
//! offset; the time bound, a shutdown or a rebalance are not. So before a
//! batch is inserted, its range is written as an [`Intent`] in the metadata
//! of the partition's committed offset (see `consume.rs`); a new owner of
//! the partition reads it and replays exactly that range first, whatever
//! its own bounds are. Inserting and committing are not done here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::decode::Records;

/// When to cut a batch.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Records (rows and dead letters) per batch.
    pub max_rows: usize,
    /// Payload bytes per batch.
    pub max_bytes: usize,
    /// Age of the oldest record.
    pub max_age: Duration,
}

/// Records read and not yet inserted, and their payload bytes: what the
/// sink's memory holds, and its budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Records (rows and dead letters).
    pub records: usize,
    /// Their payload bytes.
    pub bytes: usize,
}

impl Held {
    /// One record of `bytes` payload bytes.
    pub fn record(bytes: usize) -> Held {
        Held { records: 1, bytes }
    }

    /// Whether either count has reached `budget`'s.
    pub fn reaches(&self, budget: Held) -> bool {
        self.records >= budget.records || self.bytes >= budget.bytes
    }
}

impl std::ops::Add for Held {
    type Output = Held;

    fn add(self, other: Held) -> Held {
        Held {
            records: self.records + other.records,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl std::ops::AddAssign for Held {
    fn add_assign(&mut self, other: Held) {
        *self = *self + other;
    }
}

impl std::ops::SubAssign for Held {
    fn sub_assign(&mut self, other: Held) {
        self.records -= other.records;
        self.bytes -= other.bytes;
    }
}

impl std::iter::Sum for Held {
    fn sum<I: Iterator<Item = Held>>(all: I) -> Held {
        all.fold(Held::default(), |total, held| total + held)
    }
}

/// A contiguous offset range of one partition.
#[derive(Debug)]
pub struct Batch {
    /// Kafka partition.
    pub partition: i32,
    /// First offset in the batch.
    pub first_offset: i64,
    /// Last offset in the batch.
    pub last_offset: i64,
    /// The records, in offset order.
    pub records: Records,
    /// Payload bytes in the batch.
    pub bytes: usize,
    opened_at: Instant,
}

impl Batch {
    fn open(partition: i32, offset: i64, now: Instant) -> Self {
        Self {
            partition,
            first_offset: offset,
            last_offset: offset,
            records: Records::default(),
            bytes: 0,
            opened_at: now,
        }
    }

    /// What the batch holds.
    pub fn held(&self) -> Held {
        Held {
            records: self.records.len(),
            bytes: self.bytes,
        }
    }

    /// The range this batch covers, as recorded before its insert.
    pub fn intent(&self) -> Intent {
        Intent {
            first_offset: self.first_offset,
            last_offset: self.last_offset,
        }
    }
}

/// The deduplication token of rows from offsets `first..=last`.
pub fn dedup_token(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}-{partition}-{first}-{last}")
}

/// The offset range of a batch about to be inserted, kept in the committed
/// offset's metadata until the batch's own commit replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// First offset of the batch.
    pub first_offset: i64,
    /// Last offset of the batch.
    pub last_offset: i64,
}

const INTENT_PREFIX: &str = "lumen-sink/1 batch ";

impl Intent {
    /// The offset-commit metadata string.
    pub fn encode(&self) -> String {
        format!("{INTENT_PREFIX}{}-{}", self.first_offset, self.last_offset)
    }

    /// Reads metadata written by [`Intent::encode`]; anything else (empty,
    /// another tool's) is no intent.
    pub fn decode(metadata: &str) -> Option<Self> {
        let (first, last) = metadata.strip_prefix(INTENT_PREFIX)?.split_once('-')?;
        let intent = Self {
            first_offset: first.parse().ok()?,
            last_offset: last.parse().ok()?,
        };
        (intent.first_offset >= 0 && intent.first_offset <= intent.last_offset).then_some(intent)
    }
}

/// The batches of one partition: one open, the sealed ones waiting to be
/// inserted in order.
#[derive(Debug)]
pub struct Batcher {
    partition: i32,
    bounds: Bounds,
    /// Cut exactly after this offset (the replay of an [`Intent`]), ignoring
    /// the bounds until then.
    replay_until: Option<i64>,
    open: Option<Batch>,
    sealed: VecDeque<Batch>,
    /// What `open` and `sealed` hold.
    held: Held,
}

impl Batcher {
    /// A batcher for a partition whose committed offset carried `replay`.
    pub fn new(partition: i32, bounds: Bounds, replay: Option<Intent>) -> Self {
        Self {
            partition,
            bounds,
            replay_until: replay.map(|intent| intent.last_offset),
            open: None,
            sealed: VecDeque::new(),
            held: Held::default(),
        }
    }

    /// Adds the record at `offset` (copying its key and payload), and seals
    /// by size.
    pub fn push(&mut self, offset: i64, key: Option<&[u8]>, payload: &[u8], now: Instant) {
        self.advance(offset, Some((key, payload)), now);
    }

    /// Passes over the record at `offset` (a duplicate): the open batch's
    /// range covers it, so it is committed with the batch, but it is not
    /// written. A replay ending at it still ends there.
    pub fn skip(&mut self, offset: i64, now: Instant) {
        self.advance(offset, None, now);
    }

    fn advance(&mut self, offset: i64, record: Option<(Option<&[u8]>, &[u8])>, now: Instant) {
        if let Some(until) = self.replay_until
            && offset > until
        {
            // The replayed range ended at a record no longer delivered
            // (removed by retention): cut where it would have been.
            self.replay_until = None;
            self.seal();
        }
        let batch = self
            .open
            .get_or_insert_with(|| Batch::open(self.partition, offset, now));
        batch.last_offset = offset;
        if let Some((key, payload)) = record {
            batch.bytes += payload.len();
            batch.records.push(offset, key, payload);
            self.held += Held::record(payload.len());
        }
        let full = match self.replay_until {
            Some(until) => offset >= until,
            None => {
                batch.records.len() >= self.bounds.max_rows || batch.bytes >= self.bounds.max_bytes
            }
        };
        if full {
            self.replay_until = None;
            self.seal();
        }
    }

    /// Seals the open batch if it has waited `max_age` and nothing else is
    /// waiting (an older sealed batch means ClickHouse is behind: keep
    /// filling this one up to its size bounds instead). A replay is never
    /// cut by time.
    pub fn seal_if_due(&mut self, now: Instant) {
        let due = self.open.as_ref().is_some_and(|batch| {
            now.saturating_duration_since(batch.opened_at) >= self.bounds.max_age
        });
        if due && self.sealed.is_empty() && self.replay_until.is_none() {
            self.seal();
        }
    }

    /// Seals the open batch before its bounds (the read-ahead budget, the
    /// partition read to its end, shutdown), unless it replays an intent: a
    /// replay must end where the intent says, or its deduplication token
    /// would not match the insert it repeats, which may have landed.
    pub fn cut(&mut self) {
        if self.replay_until.is_none() {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if let Some(batch) = self.open.take() {
            self.sealed.push_back(batch);
        }
    }

    /// The oldest sealed batch, to insert next.
    pub fn take_sealed(&mut self) -> Option<Batch> {
        let batch = self.sealed.pop_front()?;
        self.held -= batch.held();
        Some(batch)
    }

    /// What is buffered (open and sealed).
    pub fn held(&self) -> Held {
        self.held
    }

    /// Sealed batches waiting.
    pub fn waiting(&self) -> usize {
        self.sealed.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty()
    }

    /// When the open batch becomes due, if there is one.
    pub fn due_at(&self) -> Option<Instant> {
        self.open
            .as_ref()
            .map(|batch| batch.opened_at + self.bounds.max_age)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_rows: 3,
        max_bytes: 1_000,
        max_age: Duration::from_secs(1),
    };

    fn push(batcher: &mut Batcher, offset: i64, bytes: usize, now: Instant) {
        batcher.push(offset, None, &vec![0; bytes], now);
    }

    fn ranges(batcher: &mut Batcher) -> Vec<(i64, i64)> {
        std::iter::from_fn(|| batcher.take_sealed())
            .map(|b| (b.first_offset, b.last_offset))
            .collect()
    }

    #[test]
    fn holds_records_and_their_payload_bytes_until_taken() {
        let now = Instant::now();
        let mut batcher = Batcher::new(0, BOUNDS, None);
        for (offset, bytes) in [(0, 10), (1, 20), (2, 30), (3, 40)] {
            push(&mut batcher, offset, bytes, now);
        }
        batcher.skip(4, now);
        let held = Held {
            records: 4,
            bytes: 100,
        };
        assert_eq!(batcher.held(), held, "a skipped record holds nothing");
        let first = batcher.take_sealed().expect("sealed at 3 rows");
        assert_eq!(
            first.held(),
            Held {
                records: 3,
                bytes: 60
            }
        );
        assert_eq!(
            batcher.held(),
            Held {
                records: 1,
                bytes: 40
            }
        );
        assert!(held.reaches(Held {
            records: 4,
            bytes: 1_000
        }));
        assert!(held.reaches(Held {
            records: 1_000,
            bytes: 100
        }));
        assert!(!held.reaches(Held {
            records: 5,
            bytes: 101
        }));
    }

    #[test]
    fn cuts_by_rows_from_the_start_offset() {
        let now = Instant::now();
        let mut batcher = Batcher::new(0, BOUNDS, None);
        for offset in [10, 11, 13, 14, 15, 16, 17] {
            push(&mut batcher, offset, 10, now);
        }
        assert_eq!(ranges(&mut batcher), vec![(10, 13), (14, 16)]);
        assert!(!batcher.is_empty(), "17 is still open");
    }

    #[test]
    fn a_skipped_record_is_in_the_range_but_not_written_nor_counted() {
        let now = Instant::now();
        let mut batcher = Batcher::new(0, BOUNDS, None);
        batcher.skip(9, now);
        for offset in [10, 11] {
            push(&mut batcher, offset, 10, now);
        }
        batcher.skip(12, now);
        push(&mut batcher, 13, 10, now);
        assert_eq!(batcher.waiting(), 1, "sealed at 3 written records");
        let batch = batcher.take_sealed().expect("sealed");
        assert_eq!((batch.first_offset, batch.last_offset), (9, 13));
        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [10, 11, 13]);
    }

    #[test]
    fn a_replay_ending_at_a_skipped_record_ends_there() {
        let intent = Intent {
            first_offset: 10,
            last_offset: 12,
        };
        let now = Instant::now();
        let mut batcher = Batcher::new(0, BOUNDS, Some(intent));
        push(&mut batcher, 10, 1, now);
        batcher.skip(11, now);
        batcher.skip(12, now);
        push(&mut batcher, 13, 1, now);
        assert_eq!(ranges(&mut batcher), vec![(10, 12)]);
    }

    #[test]
    fn cuts_by_bytes() {
        let now = Instant::now();
        let mut batcher = Batcher::new(0, BOUNDS, None);
        push(&mut batcher, 0, 600, now);
        push(&mut batcher, 1, 600, now);
        push(&mut batcher, 2, 10, now);
        assert_eq!(ranges(&mut batcher), vec![(0, 1)]);
    }

    #[test]
    fn seals_by_age_only_when_nothing_waits() {
        let start = Instant::now();
        let mut batcher = Batcher::new(0, BOUNDS, None);
        push(&mut batcher, 0, 1, start);
        batcher.seal_if_due(start + Duration::from_millis(999));
        assert_eq!(batcher.waiting(), 0);
        batcher.seal_if_due(start + Duration::from_secs(1));
        assert_eq!(batcher.waiting(), 1);
        push(&mut batcher, 1, 1, start);
        batcher.seal_if_due(start + Duration::from_secs(5));
        assert_eq!(
            batcher.waiting(),
            1,
            "an older batch is waiting: keep filling"
        );
    }

    #[rstest]
    #[case::same_bounds(3, vec![(10, 12), (13, 15)])]
    #[case::smaller_bounds_now(1, vec![(10, 12), (13, 13), (14, 14), (15, 15)])]
    #[case::larger_bounds_now(100, vec![(10, 12)])]
    fn a_replay_is_cut_exactly_where_the_intent_says(
        #[case] max_rows: usize,
        #[case] expected: Vec<(i64, i64)>,
    ) {
        // The crashed owner had inserted 10..=12 (cut by time) without committing.
        let intent = Intent {
            first_offset: 10,
            last_offset: 12,
        };
        let now = Instant::now();
        let mut batcher = Batcher::new(0, Bounds { max_rows, ..BOUNDS }, Some(intent));
        for offset in 10..=15 {
            push(&mut batcher, offset, 1, now);
            batcher.seal_if_due(now + Duration::from_secs(60));
        }
        assert_eq!(ranges(&mut batcher), expected);
    }

    /// A batcher replaying the intent 10..=12, with room for 100 rows.
    fn replaying_10_to_12() -> Batcher {
        let intent = Intent {
            first_offset: 10,
            last_offset: 12,
        };
        let bounds = Bounds {
            max_rows: 100,
            ..BOUNDS
        };
        Batcher::new(0, bounds, Some(intent))
    }

    #[test]
    fn an_early_cut_leaves_a_replay_whole_and_cuts_what_follows_it() {
        let now = Instant::now();
        let mut batcher = replaying_10_to_12();
        push(&mut batcher, 10, 1, now);
        push(&mut batcher, 11, 1, now);
        batcher.cut();
        assert_eq!(batcher.waiting(), 0, "a replay ends where its intent says");
        push(&mut batcher, 12, 1, now);
        push(&mut batcher, 13, 1, now);
        batcher.cut();
        assert_eq!(ranges(&mut batcher), vec![(10, 12), (13, 13)]);
    }

    #[test]
    fn a_replay_whose_last_record_is_gone_is_cut_before_the_next() {
        let now = Instant::now();
        let mut batcher = replaying_10_to_12();
        push(&mut batcher, 10, 1, now);
        push(&mut batcher, 14, 1, now);
        assert_eq!(ranges(&mut batcher), vec![(10, 10)]);
    }

    #[rstest]
    #[case(Intent { first_offset: 0, last_offset: 0 })]
    #[case(Intent { first_offset: 17, last_offset: 49_999 })]
    fn intents_round_trip(#[case] intent: Intent) {
        assert_eq!(Intent::decode(&intent.encode()), Some(intent));
    }

    #[rstest]
    #[case("")]
    #[case("lumen-sink/1 batch 5")]
    #[case("lumen-sink/1 batch 9-5")]
    #[case("lumen-sink/1 batch -1-5")]
    #[case("someone else's metadata")]
    fn foreign_metadata_is_no_intent(#[case] metadata: &str) {
        assert_eq!(Intent::decode(metadata), None);
    }

    #[test]
    fn tokens_name_topic_partition_and_range() {
        assert_eq!(
            dedup_token("lumen.enriched", 2, 10, 99),
            "lumen.enriched-2-10-99"
        );
    }
}
