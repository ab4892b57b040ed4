//! The recent event ids of each partition, so that a tracker retry (same
//! event id, hence same key and partition) is not enriched twice. Bounded:
//! the oldest ids leave first once a partition holds `capacity`.
//!
//! Each id is kept as a 128-bit SipHash of its text (16 bytes, twice: set
//! and order), not as a string (about 170 bytes with both copies): with
//! 100 000 ids per partition that is the difference between ~30 and
//! ~100 MiB over six partitions. A collision takes 2^64 ids to expect.
//!
//! Ids of a batch are remembered only after its transaction commits (the
//! consume loop calls [`Dedupe::remember`] then); after a restart or an
//! assignment `restore.rs` refills a partition from the tail of `lumen.raw`
//! before its committed offset.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

/// Recent event ids per partition.
#[derive(Debug)]
pub struct Dedupe {
    capacity: usize,
    partitions: HashMap<i32, Window>,
}

#[derive(Debug, Default)]
struct Window {
    ids: HashSet<u128>,
    order: VecDeque<u128>,
}

fn digest(event_id: &str) -> u128 {
    let mut hasher = SipHasher13::new();
    hasher.write(event_id.as_bytes());
    hasher.finish128().as_u128()
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

    /// Whether `event_id` was already processed in `partition`.
    pub fn seen(&self, partition: i32, event_id: &str) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|w| w.ids.contains(&digest(event_id)))
    }

    /// Records a processed id, evicting the oldest past the capacity.
    pub fn remember(&mut self, partition: i32, event_id: &str) {
        let id = digest(event_id);
        let window = self.partitions.entry(partition).or_default();
        if !window.ids.insert(id) {
            return;
        }
        window.order.push_back(id);
        while window.order.len() > self.capacity {
            if let Some(oldest) = window.order.pop_front() {
                window.ids.remove(&oldest);
            }
        }
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
        let mut dedupe = Dedupe::new(2);
        dedupe.remember(0, "a");
        dedupe.remember(0, "a");
        dedupe.remember(0, "b");
        assert!(dedupe.seen(0, "a") && dedupe.seen(0, "b"));
        assert!(!dedupe.seen(1, "a"), "partitions are separate");
        dedupe.remember(0, "c");
        assert!(!dedupe.seen(0, "a"), "oldest evicted");
        assert!(dedupe.seen(0, "c"));
        dedupe.drop_partition(0);
        assert!(!dedupe.seen(0, "c"));
    }
}
