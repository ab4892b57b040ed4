//! Raw events in, exactly the expected enriched events, share records and
//! dead letters out (read_committed); readiness and metrics.

use lumen_schemas::{Channel, Codec, EnrichedEvent, ShareRecord, TokenStatus};
use rdkafka::Message;
use rdkafka::message::Headers;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enriches_records_shares_and_dead_letters() {
    let topics = Topics::create("pipeline").await;
    let group = unique("it-enrich-pipeline");
    let shared = token(1);
    let share = share("share-1", "sharer", &shared, "whatsapp");
    let mut visit = pageview("visit-1", "reader");
    visit.landing_token = Some(shared.clone());
    let mut search = pageview("visit-2", "searcher");
    search.referrer = Some("https://www.google.com/".to_owned());
    let mut forged = pageview("visit-3", "forger");
    forged.landing_token = Some("AcB3bAEjRWeJq83R".to_owned());
    forged.referrer = Some("https://t.co/x".to_owned());
    let retry = visit.clone();
    produce_raw(&topics, &[share, visit, search, forged, retry]).await;
    produce_bytes(
        &topics,
        &[(b"garbage-key".to_vec(), b"not avro at all".to_vec())],
    )
    .await;

    let mut config = config(&topics, &group);
    // Statistics (consumer lag) every second instead of every five.
    config
        .kafka
        .options
        .push(("statistics.interval.ms".to_owned(), "1000".to_owned()));
    let service = Service::start(config).await;
    service.wait_ready().await;
    wait_caught_up(&topics, &group).await;

    let codec = Codec::<EnrichedEvent>::new().expect("codec");
    let enriched: Vec<EnrichedEvent> = read_committed(&topics.names.enriched)
        .await
        .iter()
        .map(|m| codec.decode(m.payload().expect("payload")).expect("decode"))
        .collect();
    let mut ids: Vec<&str> = enriched.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["share-1", "visit-1", "visit-2", "visit-3"],
        "the retry is dropped"
    );
    let by_id = |id: &str| enriched.iter().find(|e| e.event_id == id).expect("event");
    let visit = by_id("visit-1");
    assert_eq!(visit.token_status, TokenStatus::Explicit);
    assert_eq!(visit.channel, Channel::DarkSocial);
    assert_eq!(visit.rule, "token.private");
    assert_eq!(visit.landing_share_target.as_deref(), Some("whatsapp"));
    assert_eq!(visit.landing_sharer_visitor_id.as_deref(), Some("sharer"));
    assert_eq!(by_id("visit-2").channel, Channel::Search);
    let forged = by_id("visit-3");
    assert_eq!(forged.token_status, TokenStatus::Invalid);
    assert_eq!(forged.rule, "referrer.social");

    let shares = read_committed(&topics.names.shares).await;
    assert_eq!(shares.len(), 1);
    let record = Codec::<ShareRecord>::new()
        .expect("codec")
        .decode(shares[0].payload().expect("payload"))
        .expect("share record");
    assert_eq!(record.token, shared);
    assert_eq!(shares[0].key(), Some(shared.as_bytes()));

    let dead = read_committed(&topics.names.dlq).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key(), Some(&b"garbage-key"[..]));
    assert_eq!(dead[0].payload(), Some(&b"not avro at all"[..]));
    let headers = dead[0].headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("lumen.reason").as_deref(), Some("bad_magic"));
    assert_eq!(
        header("lumen.source.topic").as_deref(),
        Some(topics.names.raw.as_str())
    );
    assert!(header("lumen.source.offset").is_some());

    let (status, metrics) = http_get(service.admin, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "lumen_enrich_events_out_total{channel=\"dark_social\"}",
        "lumen_enrich_events_in_total{outcome=\"duplicate\"} 1",
        "lumen_enrich_dlq_total{reason=\"bad_magic\"} 1",
        "lumen_enrich_token_lookups_total{result=\"hit\"} 1",
        "lumen_enrich_token_lookups_total{result=\"invalid\"} 1",
        "lumen_enrich_transactions_total{outcome=\"committed\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
    let admin = service.admin;
    eventually("consumer lag per partition", || async move {
        let (_, metrics) = http_get(admin, "/metrics").await;
        metrics.contains("lumen_enrich_consumer_lag_messages{partition=\"0\"} 0")
    })
    .await;
    service.stop().await;
}

/// A backlog keeps the loop busy without a pause: transactions must still
/// close on `--batch-max-wait-ms`, not only when `--batch-max-events` fill
/// (tokio's timer alone would not fire while records keep arriving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_commits_on_the_age_bound() {
    const BACKLOG: usize = 20_000;
    let topics = Topics::create("age-bound").await;
    let group = unique("it-enrich-age-bound");
    let events: Vec<_> = (0..BACKLOG)
        .map(|i| pageview(&format!("backlog-{i}"), &format!("reader-{}", i % 100)))
        .collect();
    produce_raw(&topics, &events).await;

    let mut config = config(&topics, &group);
    config.pipeline.batch_max_events = BACKLOG * 10;
    config.pipeline.batch_max_wait_ms = 20;
    let service = Service::start(config).await;
    service.wait_ready().await;
    wait_caught_up(&topics, &group).await;

    let (_, metrics) = http_get(service.admin, "/metrics").await;
    let committed = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("lumen_enrich_transactions_total{outcome=\"committed\"} ")
        })
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    // 20 000 events take well over 20 ms to enrich on any machine.
    assert!(
        committed >= 2,
        "{BACKLOG} events in {committed} transaction(s): the age bound was ignored"
    );
    assert_eq!(read_committed(&topics.names.enriched).await.len(), BACKLOG);
    service.stop().await;
}
