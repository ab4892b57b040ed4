//! What ClickHouse shows, read back in the shape of the generator's
//! [`Truth`], and the comparisons every end-to-end test makes.

use std::collections::BTreeMap;
use std::time::Duration;

use clickhouse::{Client, Row};
use lumen_e2e::Truth;
use serde::Deserialize;

use crate::harness::eventually;

#[derive(Debug, Row, Deserialize)]
struct Count {
    key: String,
    value: u64,
}

async fn grouped(client: &Client, sql: &str) -> BTreeMap<String, u64> {
    client
        .query(sql)
        .fetch_all::<Count>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|c| (c.key, c.value))
        .collect()
}

async fn scalar(client: &Client, sql: &str) -> u64 {
    client
        .query(sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Waits until `lumen.events` holds `expected` rows (or more, which the
/// caller then reports as duplicates).
pub async fn wait_for_rows(client: &Client, expected: u64, timeout: Duration) {
    eventually(&format!("{expected} rows in events"), timeout, || async {
        let rows = scalar(client, "SELECT count() FROM events").await;
        (rows >= expected).then_some(())
    })
    .await;
}

/// What ClickHouse shows in the shape of a [`Truth`]: every count the
/// generator can predict, read from `events` and from the aggregates.
#[derive(Debug, PartialEq)]
struct Counts {
    rows: u64,
    distinct_events: u64,
    visits_by_channel: BTreeMap<String, u64>,
    shares_by_method: BTreeMap<String, u64>,
    preview_fetches: u64,
    crawler_hits: u64,
    aggregated_visits_by_channel: BTreeMap<String, u64>,
    share_ratio_dark_public: (u64, u64),
}

impl Counts {
    /// What ClickHouse should show once everything `truth` counts landed.
    fn expected(truth: &Truth) -> Self {
        Self {
            rows: truth.events,
            distinct_events: truth.events,
            visits_by_channel: truth.visits_by_channel.clone(),
            shares_by_method: truth.shares_by_method.clone(),
            preview_fetches: truth.preview_fetches,
            crawler_hits: truth.crawler_hits,
            aggregated_visits_by_channel: truth.visits_by_channel.clone(),
            share_ratio_dark_public: (truth.visits("dark_social"), truth.visits("social")),
        }
    }

    async fn read(client: &Client) -> Self {
        Self {
            rows: scalar(client, "SELECT count() FROM events").await,
            distinct_events: scalar(client, "SELECT uniqExact(event_id) FROM events").await,
            visits_by_channel: grouped(
                client,
                "SELECT toString(channel) AS key, count() AS value FROM events \
                 WHERE kind = 'pageview' AND NOT is_bot GROUP BY key",
            )
            .await,
            shares_by_method: grouped(
                client,
                "SELECT ifNull(toString(share_method), '') AS key, count() AS value FROM events \
                 WHERE kind = 'share' GROUP BY key",
            )
            .await,
            preview_fetches: scalar(
                client,
                "SELECT count() FROM events WHERE kind = 'pageview' AND is_bot AND preview_app != ''",
            )
            .await,
            crawler_hits: scalar(
                client,
                "SELECT count() FROM events WHERE kind = 'pageview' AND is_bot AND preview_app = ''",
            )
            .await,
            aggregated_visits_by_channel: grouped(
                client,
                "SELECT toString(channel) AS key, sum(visits) AS value FROM traffic_per_minute \
                 GROUP BY key HAVING value > 0",
            )
            .await,
            share_ratio_dark_public: client
                .query(
                    "SELECT sum(dark_social_visits), sum(public_social_visits) FROM share_ratio \
                     WHERE bucket_size = 'day'",
                )
                .fetch_one()
                .await
                .expect("share_ratio"),
        }
    }
}

/// Asserts that ClickHouse counts exactly what the generator sent: every
/// event once, visits per channel, shares per method, preview fetches, and
/// that the materialized aggregates equal the same counts.
///
/// An insert makes its `events` part visible before the parts of the
/// materialized views it feeds, and a batch cut off by a crash or a
/// revocation can land in `events` first and in the views only when its
/// owner replays it (deduplicated in `events`, pushed to the views). So the
/// counts are read until they settle, within `settle`; a difference that
/// outlasts it fails, showing every count.
pub async fn assert_matches_truth(client: &Client, truth: &Truth, settle: Duration) {
    let expected = Counts::expected(truth);
    let deadline = tokio::time::Instant::now() + settle;
    let mut actual = Counts::read(client).await;
    while actual != expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        actual = Counts::read(client).await;
    }
    assert_eq!(
        actual,
        expected,
        "ClickHouse (left) vs the generator's truth (right); duplicates in events: {}",
        actual.rows.saturating_sub(actual.distinct_events)
    );
}

/// Asserts that every tokened visit is in `share_visits` with its sharer
/// resolved (explicit and address-bar shares alike, since every token the
/// generator hands out was minted by a pageview it sent).
pub async fn assert_share_visits_resolved(client: &Client, truth: &Truth) {
    let tokened = scalar(client, "SELECT count() FROM share_visits").await;
    assert_eq!(
        tokened, truth.tokened_visits,
        "tokened visits in share_visits"
    );
    let unresolved = scalar(
        client,
        "SELECT count() FROM share_visits WHERE sharer_visitor_id IS NULL OR sharer_visitor_id = ''",
    )
    .await;
    assert_eq!(unresolved, 0, "share_visits rows without a sharer");
    let by_status = grouped(
        client,
        "SELECT toString(token_status) AS key, count() AS value FROM share_visits GROUP BY key",
    )
    .await;
    assert!(
        by_status.contains_key("explicit") && by_status.contains_key("address_bar"),
        "both explicit and address-bar shares resolve: {by_status:?}"
    );
}
