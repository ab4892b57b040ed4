//! The recent event ids of each Kafka partition, so that a record seen
//! twice (a tracker retry in `lumen.raw`; a batch of an aborted Kafka
//! transaction that a lost marker left visible in `lumen.enriched`) is
//! processed once. An event's id is its key's partition's business: every
//! copy of an event lands in the same partition. Bounded: the oldest ids
//! leave first once a partition holds `capacity`.
//!
//! Each id is kept as a 128-bit SipHash of its text (16 bytes, twice: set
//! and order), not as a string (about 170 bytes with both copies): with
//! 100 000 ids per partition that is the difference between ~30 and
//! ~100 MiB over six partitions. A collision takes 2^64 ids to expect.
//!
//! The digest is computed once per event ([`EventDigest::of`]). It is keyed
//! per process (never stored, restores recompute it), so the sets can use a
//! cheap hasher without a sender choosing ids that collide in them. After a
//! restart or an assignment, callers refill a partition from the tail of
//! the topic before their committed offset ([`crate::reader::RangeReader::tails`]).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use siphasher::sip128::{Hasher128, SipHasher13};

/// A set of digests: their bits are already uniform, so hashing them
/// again with SipHash would be wasted work.
type DigestSet = foldhash::HashSet<EventDigest>;

/// The 128-bit keyed digest of an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventDigest(u128);

impl EventDigest {
    /// The digest of `event_id` under this process's key.
    pub fn of(event_id: &str) -> Self {
        static KEY: OnceLock<[u8; 16]> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            // std's randomly keyed SipHash, asked twice, is the random source.
            let random = std::hash::RandomState::new();
            let mut key = [0; 16];
            key[..8].copy_from_slice(&random.hash_one(0u8).to_le_bytes());
            key[8..].copy_from_slice(&random.hash_one(1u8).to_le_bytes());
            key
        });
        let mut hasher = SipHasher13::new_with_key(key);
        hasher.write(event_id.as_bytes());
        Self(hasher.finish128().as_u128())
    }
}

/// Recent event ids per partition.
#[derive(Debug)]
pub struct Dedupe {
    capacity: usize,
    partitions: HashMap<i32, Window>,
}

#[derive(Debug, Default)]
struct Window {
    ids: DigestSet,
    order: VecDeque<EventDigest>,
}

impl Dedupe {
    /// Keeps up to `capacity` ids per partition.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            partitions: HashMap::new(),
        }
    }

    /// How many recent ids of a partition are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the event was already processed in `partition`.
    pub fn seen(&self, partition: i32, id: EventDigest) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|w| w.ids.contains(&id))
    }

    /// Records a processed event, evicting the oldest past the capacity;
    /// `false` if it was already among the partition's recent ones (one
    /// lookup for a caller that checks and records at once).
    pub fn remember(&mut self, partition: i32, id: EventDigest) -> bool {
        let window = self.partitions.entry(partition).or_default();
        if !window.ids.insert(id) {
            return false;
        }
        window.order.push_back(id);
        while window.order.len() > self.capacity {
            if let Some(oldest) = window.order.pop_front() {
                window.ids.remove(&oldest);
            }
        }
        true
    }

    /// Forgets a partition (revoked, or about to be restored again).
    pub fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_partition_within_capacity() {
        let [a, b, c] = ["a", "b", "c"].map(EventDigest::of);
        let mut dedupe = Dedupe::new(2);
        assert!(dedupe.remember(0, a));
        assert!(!dedupe.remember(0, a), "already recent");
        assert!(dedupe.remember(0, b));
        assert!(dedupe.seen(0, a) && dedupe.seen(0, b));
        assert!(!dedupe.seen(1, a), "partitions are separate");
        dedupe.remember(0, c);
        assert!(!dedupe.seen(0, a), "oldest evicted");
        assert!(dedupe.seen(0, c));
        dedupe.drop_partition(0);
        assert!(!dedupe.seen(0, c));
    }

    #[test]
    fn digests_are_stable_within_the_process_and_tell_ids_apart() {
        assert_eq!(EventDigest::of("event-1"), EventDigest::of("event-1"));
        assert_ne!(EventDigest::of("event-1"), EventDigest::of("event-2"));
    }
}
