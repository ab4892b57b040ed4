//! The recent event ids of each Kafka partition, so that a record seen
//! twice (a tracker retry in `lumen.raw`; a batch of an aborted Kafka
//! transaction that a lost marker left visible in `lumen.enriched`) is
//! processed once. An event's id is its key's partition's business: every
//! copy of an event lands in the same partition. Bounded: a partition keeps
//! its ids in two generations of up to `capacity` each, the older dropped
//! whole when the newer fills, so the last `capacity` ids (and at most
//! twice as many) are always known. Evicting the oldest id one at a time
//! (a queue beside the set, and a removal from the set per new id) was a
//! tenth of the sink's CPU (perf during `make bench-sink`).
//!
//! Each id is kept as a 128-bit SipHash of its text (16 bytes), not as a
//! string (about 170 bytes with both copies): with two generations of
//! 100 000 ids per partition that is the difference between ~30 and
//! ~100 MiB over six partitions. A collision takes 2^64 ids to expect.
//!
//! The digest is computed once per event ([`EventDigest::of`]). It is keyed
//! per process (never stored, restores recompute it), so the sets can use a
//! cheap hasher without a sender choosing ids that collide in them. After a
//! restart or an assignment, callers refill a partition from the tail of
//! the topic before their committed offset ([`crate::reader::RangeReader::tails`]).

use std::collections::HashMap;
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

/// A partition's ids: `current` fills up to the capacity, then becomes
/// `previous` (the old `previous` is dropped).
#[derive(Debug, Default)]
struct Window {
    current: DigestSet,
    previous: DigestSet,
}

impl Dedupe {
    /// Keeps at least the last `capacity` ids of each partition.
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
            .is_some_and(|w| w.current.contains(&id) || w.previous.contains(&id))
    }

    /// Records a processed event; `false` if it was already among the
    /// partition's recent ones (for a caller that checks and records at
    /// once).
    pub fn remember(&mut self, partition: i32, id: EventDigest) -> bool {
        let window = self.partitions.entry(partition).or_default();
        if window.previous.contains(&id) || !window.current.insert(id) {
            return false;
        }
        if window.current.len() >= self.capacity {
            // The emptied set keeps its allocation for the next generation.
            std::mem::swap(&mut window.current, &mut window.previous);
            window.current.clear();
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
    fn remembers_per_partition() {
        let [a, b] = ["a", "b"].map(EventDigest::of);
        let mut dedupe = Dedupe::new(2);
        assert!(dedupe.remember(0, a));
        assert!(!dedupe.remember(0, a), "already recent");
        assert!(dedupe.remember(0, b));
        assert!(
            !dedupe.remember(0, a),
            "still recent in the older generation"
        );
        assert!(dedupe.seen(0, a) && dedupe.seen(0, b));
        assert!(!dedupe.seen(1, a), "partitions are separate");
        dedupe.drop_partition(0);
        assert!(!dedupe.seen(0, a));
    }

    #[test]
    fn the_last_capacity_ids_are_always_known_and_at_most_twice_as_many() {
        let capacity = 5;
        let ids: Vec<EventDigest> = (0..40).map(|n| EventDigest::of(&n.to_string())).collect();
        let mut dedupe = Dedupe::new(capacity);
        for (n, id) in ids.iter().enumerate() {
            assert!(dedupe.remember(3, *id), "id {n} is new");
            let known = ids[..=n].iter().filter(|id| dedupe.seen(3, **id)).count();
            assert!(
                known >= capacity.min(n + 1),
                "after {n}: only {known} known"
            );
            assert!(known <= 2 * capacity, "after {n}: {known} known");
            assert!(
                ids[n + 1 - capacity.min(n + 1)..=n]
                    .iter()
                    .all(|id| !dedupe.remember(3, *id)),
                "after {n}: one of the last {capacity} was forgotten"
            );
        }
        assert!(!dedupe.seen(3, ids[0]), "the oldest left");
    }

    #[test]
    fn digests_are_stable_within_the_process_and_tell_ids_apart() {
        assert_eq!(EventDigest::of("event-1"), EventDigest::of("event-1"));
        assert_ne!(EventDigest::of("event-1"), EventDigest::of("event-2"));
    }
}
