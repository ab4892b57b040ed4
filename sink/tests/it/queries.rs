//! Every query of `sink/queries.md` runs against real ClickHouse on data
//! the sink wrote, and `share_visits` resolves sharers and cascade depths.

use lumen_schemas::{Channel, EventKind, ShareMethod, TokenStatus};
use lumen_sink::row::sample;

use crate::harness::{Harness, InProcessSink, events, now_ms};

const QUERIES: &str = include_str!("../../queries.md");

/// The ```sql blocks of queries.md.
fn sql_blocks() -> Vec<&'static str> {
    QUERIES
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect()
}

/// P0 (arrived with no token, minted T0) ← P1 (landed with T0) ← P2 (T1) ← V (T2).
fn cascade(now: i64) -> Vec<lumen_schemas::EnrichedEvent> {
    let token = |i: usize| format!("cascade{i:09}");
    (0..4)
        .map(|i| {
            let mut event = sample::event(50_000 + i as u64, now - 1_000 * (4 - i as i64));
            event.site_id = "daily-planet".to_owned();
            event.kind = EventKind::Pageview;
            event.is_bot = false;
            event.preview_app = None;
            event.share_token = None;
            event.share_method = None;
            event.visitor_id = format!("reader{i}");
            event.minted_token = Some(token(i));
            event.landing_token = (i > 0).then(|| token(i - 1));
            event.token_status = if i > 0 {
                TokenStatus::AddressBar
            } else {
                TokenStatus::Absent
            };
            event.landing_share_method = (i > 0).then_some(ShareMethod::AddressBar);
            event.channel = if i > 0 {
                Channel::DarkSocial
            } else {
                Channel::Direct
            };
            event
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_query_runs_and_share_visits_resolve_cascades() {
    let harness = Harness::new("queries").await;
    let sink = InProcessSink::start(harness.config());
    harness.produce(&events(0, 2_000)).await;
    harness.produce(&cascade(now_ms())).await;
    harness.expect_exactly(2_004).await;

    let blocks = sql_blocks();
    assert!(blocks.len() >= 4, "queries.md has its queries");
    for sql in blocks {
        let sql = sql.replace("lumen.", &format!("{}.", harness.database));
        let mut cursor = harness
            .clickhouse()
            .query(&sql)
            .param("site", "daily-planet")
            .fetch_bytes("TSV")
            .expect("query");
        let rows = cursor
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        assert!(!rows.is_empty(), "no rows from\n{sql}");
    }

    let depths = harness
        .tsv(&format!(
            "SELECT sharer_visitor_id, cascade_depth, parent_token, toString(share_method) FROM {}.share_visits \
             WHERE token LIKE 'cascade%' ORDER BY cascade_depth",
            harness.database
        ))
        .await;
    assert_eq!(
        depths,
        "reader0\t1\t\taddress_bar\nreader1\t2\tcascade000000000\taddress_bar\nreader2\t3\tcascade000000001\taddress_bar\n"
    );
    sink.stop().await;
}
