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

/// Asserts that ClickHouse counts exactly what the generator sent: every
/// event once, visits per channel, shares per method, preview fetches, and
/// that the materialized aggregates equal a recount over `events`.
pub async fn assert_matches_truth(client: &Client, truth: &Truth) {
    let rows = scalar(client, "SELECT count() FROM events").await;
    let distinct = scalar(client, "SELECT uniqExact(event_id) FROM events").await;
    assert_eq!(distinct, truth.events, "distinct events");
    assert_eq!(rows, truth.events, "rows (duplicates: {})", rows - distinct);

    let visits = grouped(
        client,
        "SELECT toString(channel) AS key, count() AS value FROM events \
         WHERE kind = 'pageview' AND NOT is_bot GROUP BY key",
    )
    .await;
    assert_eq!(visits, truth.visits_by_channel, "visits per channel");

    let shares = grouped(
        client,
        "SELECT ifNull(toString(share_method), '') AS key, count() AS value FROM events \
         WHERE kind = 'share' GROUP BY key",
    )
    .await;
    assert_eq!(shares, truth.shares_by_method, "shares per method");

    let previews = scalar(
        client,
        "SELECT count() FROM events WHERE kind = 'pageview' AND is_bot AND preview_app != ''",
    )
    .await;
    assert_eq!(previews, truth.preview_fetches, "link-preview fetches");
    let crawlers = scalar(
        client,
        "SELECT count() FROM events WHERE kind = 'pageview' AND is_bot AND preview_app = ''",
    )
    .await;
    assert_eq!(crawlers, truth.crawler_hits, "crawler hits");

    let aggregated = grouped(
        client,
        "SELECT toString(channel) AS key, sum(visits) AS value FROM traffic_per_minute \
         GROUP BY key HAVING value > 0",
    )
    .await;
    assert_eq!(
        aggregated, truth.visits_by_channel,
        "traffic_per_minute visits"
    );

    let ratio_row: (u64, u64) = client
        .query(
            "SELECT sum(dark_social_visits), sum(public_social_visits) FROM share_ratio \
             WHERE bucket_size = 'day'",
        )
        .fetch_one()
        .await
        .expect("share_ratio");
    assert_eq!(ratio_row.0, truth.visits("dark_social"), "share_ratio dark");
    assert_eq!(ratio_row.1, truth.visits("social"), "share_ratio public");
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
