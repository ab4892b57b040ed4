//! Scaling out: a second instance joins the group, partitions move, and
//! each moved partition's token store is restored from `lumen.shares`
//! before its first record: visits after the move still resolve the shares
//! the first instance recorded, and nothing is lost or doubled.

use std::collections::HashSet;

use lumen_schemas::{Codec, EnrichedEvent, TokenStatus};
use rdkafka::Message;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_partitions_keep_their_shares() {
    let topics = Topics::create("rebalance").await;
    let group = unique("it-enrich-rebalance");
    let tokens: Vec<String> = (0..12).map(|i| token(100 + i)).collect();
    let shares: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            share(
                &format!("share-{i}"),
                &format!("sharer-{i}"),
                t,
                "messenger",
            )
        })
        .collect();
    produce_raw(&topics, &shares).await;

    let first = Service::start(config(&topics, &group)).await;
    first.wait_ready().await;
    wait_caught_up(&topics, &group).await;

    let mut second_config = config(&topics, &group);
    second_config.pipeline.transactional_id = Some(format!("{group}-1"));
    let second = Service::start(second_config).await;
    second.wait_ready().await;
    first.wait_ready().await;

    let visits: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut visit = pageview(&format!("visit-{i}"), &format!("reader-{i}"));
            visit.landing_token = Some(t.clone());
            visit
        })
        .collect();
    produce_raw(&topics, &visits).await;
    wait_caught_up(&topics, &group).await;

    let codec = Codec::<EnrichedEvent>::new().expect("codec");
    let enriched: Vec<EnrichedEvent> = read_committed(&topics.names.enriched)
        .await
        .iter()
        .map(|m| codec.decode(m.payload().expect("payload")).expect("decode"))
        .collect();
    let ids: HashSet<&str> = enriched.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(enriched.len(), 24);
    assert_eq!(ids.len(), 24, "no event enriched twice");
    for visit in enriched.iter().filter(|e| e.event_id.starts_with("visit-")) {
        assert_eq!(
            visit.token_status,
            TokenStatus::Explicit,
            "{}",
            visit.event_id
        );
        assert_eq!(visit.landing_share_target.as_deref(), Some("messenger"));
    }
    let (_, metrics) = http_get(second.admin, "/metrics").await;
    let hits = metrics
        .lines()
        .find_map(|line| line.strip_prefix("lumen_enrich_token_lookups_total{result=\"hit\"} "))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        hits > 0,
        "the second instance resolved shares it restored:\n{metrics}"
    );
    second.stop().await;
    first.stop().await;
}
