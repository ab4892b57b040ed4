//! The token store of DESIGN.md: every explicit share, per partition of
//! `lumen.raw` (an explicit share and the visits it caused share a key, so a
//! partition's shares are all its visits need), bounded by a TTL and a
//! per-partition memory cap (estimated bytes, allocator and table overhead
//! included: within 15% of the measured resident growth), oldest evicted
//! first. It also resolves a visit's landing token: share age from the
//! token itself (`lumen_schemas::token`), method, target, sharer and parent
//! from the store, `address_bar` when the token was never explicitly
//! shared, `invalid` when malformed or forged.
//!
//! Filling the store from `lumen.shares` after an assignment is
//! `restore.rs`'s job; writing share records is the consume loop's.

use std::collections::{HashMap, VecDeque};

use lumen_schemas::{ShareMethod, ShareRecord, ShareToken, TokenStatus};

/// How a landing token resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The token's status.
    pub status: TokenStatus,
    /// Seconds from minting to the visit.
    pub share_age_seconds: Option<i64>,
    /// The share's method; `address_bar` when never explicitly shared.
    pub method: Option<ShareMethod>,
    /// The share button's network.
    pub target: Option<String>,
    /// The sharer's visitor id.
    pub sharer_visitor_id: Option<String>,
    /// The token the sharer had arrived with.
    pub parent_token: Option<String>,
}

impl Resolution {
    fn bare(status: TokenStatus) -> Self {
        Self {
            status,
            share_age_seconds: None,
            method: None,
            target: None,
            sharer_visitor_id: None,
            parent_token: None,
        }
    }

    /// Whether the token may be used as evidence (explicit or address bar).
    pub fn is_valid(&self) -> bool {
        matches!(self.status, TokenStatus::Explicit | TokenStatus::AddressBar)
    }
}

/// The shares of one partition, oldest first in `order`, and their
/// estimated memory.
#[derive(Debug, Default)]
struct PartitionShares {
    /// Seeded per process: tokens come from senders, who cannot aim at
    /// collisions without the seed.
    by_token: foldhash::HashMap<String, ShareRecord>,
    order: VecDeque<(i64, String)>,
    bytes: usize,
}

/// What glibc's malloc takes for a string of `len` bytes: an 8-byte
/// header, 16-byte granularity, 32 bytes at least (nothing when empty).
/// Counting only the characters undercounted a share by half.
fn heap_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).next_multiple_of(16).max(32)
    }
}

/// What a slot of `slot` bytes costs in a table that grows by doubling
/// (half empty just after growing, full just before: 1.5 times on average)
/// and, for the hash map, keeps an eighth of its slots free and a control
/// byte per slot.
fn table_bytes(slot: usize, hashed: bool) -> usize {
    if hashed {
        (slot + 1) * 3 / 2 * 8 / 7
    } else {
        slot * 3 / 2
    }
}

/// Estimated bytes of a share in the token map: its slot (key and record
/// inline) and its strings.
fn entry_bytes(record: &ShareRecord) -> usize {
    let optional = |value: &Option<String>| value.as_deref().map_or(0, |v| heap_bytes(v.len()));
    table_bytes(size_of::<(String, ShareRecord)>(), true)
        + 2 * heap_bytes(record.token.len())
        + heap_bytes(record.site_id.len())
        + heap_bytes(record.event_id.len())
        + heap_bytes(record.sharer_visitor_id.len())
        + heap_bytes(record.url.len())
        + optional(&record.share_target)
        + optional(&record.parent_token)
}

/// Estimated bytes of a token's place in the eviction queue.
fn order_bytes(token: &str) -> usize {
    table_bytes(size_of::<(i64, String)>(), false) + heap_bytes(token.len())
}

/// Explicit shares by partition, bounded by TTL and a memory cap.
#[derive(Debug)]
pub struct TokenStore {
    partitions: HashMap<i32, PartitionShares>,
    ttl_ms: i64,
    max_bytes_per_partition: usize,
}

impl TokenStore {
    /// A store keeping shares for `ttl_ms` and at most
    /// `max_bytes_per_partition` (estimated) per partition.
    pub fn new(ttl_ms: i64, max_bytes_per_partition: usize) -> Self {
        Self {
            partitions: HashMap::new(),
            ttl_ms,
            max_bytes_per_partition,
        }
    }

    /// Records an explicit share; `now_ms` (the event clock) drives expiry.
    /// Re-recording a token replaces its share (the compacted topic keeps
    /// the last one too).
    pub fn insert(&mut self, partition: i32, record: ShareRecord, now_ms: i64) {
        if record.shared_at < now_ms - self.ttl_ms {
            return;
        }
        let shares = self.partitions.entry(partition).or_default();
        shares.bytes += entry_bytes(&record) + order_bytes(&record.token);
        shares
            .order
            .push_back((record.shared_at, record.token.clone()));
        if let Some(replaced) = shares.by_token.insert(record.token.clone(), record) {
            shares.bytes -= entry_bytes(&replaced);
        }
        let horizon = now_ms - self.ttl_ms;
        while let Some((shared_at, token)) = shares.order.front() {
            let expired = *shared_at < horizon;
            if !expired && shares.bytes <= self.max_bytes_per_partition {
                break;
            }
            // A token replaced by a newer share left an older entry behind:
            // only the entry matching the current share removes it.
            if shares
                .by_token
                .get(token)
                .is_some_and(|current| current.shared_at == *shared_at)
                && let Some(removed) = shares.by_token.remove(token)
            {
                shares.bytes -= entry_bytes(&removed);
            }
            shares.bytes -= order_bytes(token);
            shares.order.pop_front();
        }
    }

    /// Forgets a partition (revoked, or about to be restored again).
    pub fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Shares held, all partitions.
    pub fn len(&self) -> usize {
        self.partitions.values().map(|p| p.by_token.len()).sum()
    }

    /// Estimated bytes held, all partitions.
    pub fn bytes(&self) -> usize {
        self.partitions.values().map(|p| p.bytes).sum()
    }

    /// Whether no share is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves a visit's landing token.
    pub fn resolve(&self, partition: i32, token: Option<&str>, received_at_ms: i64) -> Resolution {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Resolution::bare(TokenStatus::Absent);
        };
        let Ok(parsed) = ShareToken::parse_at(token, received_at_ms) else {
            return Resolution::bare(TokenStatus::Invalid);
        };
        let age = Some(parsed.age_seconds(received_at_ms));
        let share = self
            .partitions
            .get(&partition)
            .and_then(|p| p.by_token.get(token))
            .filter(|share| share.shared_at >= received_at_ms - self.ttl_ms);
        match share {
            Some(share) => Resolution {
                status: TokenStatus::Explicit,
                share_age_seconds: age,
                method: Some(share.share_method),
                target: share.share_target.clone(),
                sharer_visitor_id: Some(share.sharer_visitor_id.clone()),
                parent_token: share.parent_token.clone(),
            },
            None => Resolution {
                status: TokenStatus::AddressBar,
                share_age_seconds: age,
                method: Some(ShareMethod::AddressBar),
                ..Resolution::bare(TokenStatus::AddressBar)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// The vectors of schemas/share-token.md.
    const VALID: &str = "AcB3bAEjRWeJq83Q";
    const MINTED_MS: i64 = 1_763_442_000_000;
    const DAY_MS: i64 = 86_400_000;

    fn share(token: &str, shared_at: i64) -> ShareRecord {
        ShareRecord {
            token: token.into(),
            site_id: "daily-planet".into(),
            event_id: format!("share-{token}-{shared_at}"),
            shared_at,
            share_method: ShareMethod::Button,
            share_target: Some("whatsapp".into()),
            parent_token: Some("parent".into()),
            sharer_visitor_id: "sharer".into(),
            url: "https://dailyplanet.example/a".into(),
        }
    }

    #[rstest]
    #[case::valid_address_bar(Some(VALID), MINTED_MS + 3_600_000, TokenStatus::AddressBar, Some(3600))]
    #[case::bad_check_byte(Some("AcB3bAEjRWeJq83R"), MINTED_MS, TokenStatus::Invalid, None)]
    #[case::bad_length(Some("AcB3bAEjRWeJq83"), MINTED_MS, TokenStatus::Invalid, None)]
    #[case::bad_alphabet(Some("AcB3bAEjRWeJq8+Q"), MINTED_MS, TokenStatus::Invalid, None)]
    #[case::minted_in_the_future(Some(VALID), MINTED_MS - 6 * 60_000, TokenStatus::Invalid, None)]
    #[case::skew_tolerated(Some(VALID), MINTED_MS - 4 * 60_000, TokenStatus::AddressBar, Some(0))]
    #[case::absent(None, MINTED_MS, TokenStatus::Absent, None)]
    #[case::empty(Some(""), MINTED_MS, TokenStatus::Absent, None)]
    #[case::hostile(
        Some("\u{0}\u{0}'; DROP TABLE x;--"),
        MINTED_MS,
        TokenStatus::Invalid,
        None
    )]
    fn resolves_token_vectors(
        #[case] token: Option<&str>,
        #[case] received_at: i64,
        #[case] status: TokenStatus,
        #[case] age: Option<i64>,
    ) {
        let store = TokenStore::new(30 * DAY_MS, 1 << 20);
        let resolution = store.resolve(0, token, received_at);
        assert_eq!(resolution.status, status);
        assert_eq!(resolution.share_age_seconds, age);
        if status == TokenStatus::AddressBar {
            assert_eq!(resolution.method, Some(ShareMethod::AddressBar));
        }
    }

    #[test]
    fn explicit_share_resolves_in_its_partition_only() {
        let mut store = TokenStore::new(30 * DAY_MS, 1 << 20);
        store.insert(1, share(VALID, MINTED_MS + 1000), MINTED_MS + 1000);
        let visit_at = MINTED_MS + 120_000;
        let resolved = store.resolve(1, Some(VALID), visit_at);
        assert_eq!(resolved.status, TokenStatus::Explicit);
        assert_eq!(resolved.share_age_seconds, Some(120));
        assert_eq!(resolved.method, Some(ShareMethod::Button));
        assert_eq!(resolved.target.as_deref(), Some("whatsapp"));
        assert_eq!(resolved.sharer_visitor_id.as_deref(), Some("sharer"));
        assert_eq!(resolved.parent_token.as_deref(), Some("parent"));
        assert_eq!(
            store.resolve(2, Some(VALID), visit_at).status,
            TokenStatus::AddressBar
        );
        store.drop_partition(1);
        assert!(store.is_empty());
    }

    #[test]
    fn expired_shares_resolve_as_address_bar_and_are_evicted() {
        let mut store = TokenStore::new(DAY_MS, 1 << 20);
        store.insert(0, share(VALID, MINTED_MS), MINTED_MS);
        let later = MINTED_MS + 2 * DAY_MS;
        assert_eq!(
            store.resolve(0, Some(VALID), later).status,
            TokenStatus::AddressBar
        );
        store.insert(0, share("other", later), later);
        assert_eq!(store.len(), 1, "the expired share was evicted");
        store.insert(0, share("stale", MINTED_MS), later);
        assert_eq!(store.len(), 1, "an already expired share is not stored");
    }

    #[test]
    fn cap_evicts_the_oldest_first() {
        let one = entry_bytes(&share("a", MINTED_MS)) + order_bytes("a");
        let mut store = TokenStore::new(30 * DAY_MS, 2 * one);
        for (i, token) in ["a", "b", "c"].into_iter().enumerate() {
            let at = MINTED_MS + i as i64;
            store.insert(0, share(token, at), at);
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.bytes(), 2 * one);
        let partition = &store.partitions[&0];
        assert!(!partition.by_token.contains_key("a"));
        assert!(partition.by_token.contains_key("c"));
    }

    #[test]
    fn replacing_a_share_keeps_the_newest() {
        let mut store = TokenStore::new(30 * DAY_MS, 1 << 20);
        store.insert(0, share("a", MINTED_MS), MINTED_MS);
        let once = store.bytes();
        store.insert(0, share("a", MINTED_MS + 5), MINTED_MS + 5);
        assert_eq!(store.len(), 1);
        assert_eq!(store.partitions[&0].by_token["a"].shared_at, MINTED_MS + 5);
        assert_eq!(
            store.bytes(),
            once + order_bytes("a"),
            "only the stale queue entry remains"
        );
        store.insert(
            0,
            share("b", MINTED_MS + 31 * DAY_MS),
            MINTED_MS + 31 * DAY_MS,
        );
        assert_eq!(store.len(), 1, "both entries of `a` expired");
        assert_eq!(store.bytes(), once, "b costs what a did");
    }
}
