//! Restarting enrich mid-stream: no duplicate and no lost event in
//! `lumen.enriched` (read_committed), the token store restored from
//! `lumen.shares`, tracker retries of events processed before the restart
//! still dropped.

use std::collections::HashSet;

use lumen_schemas::{Codec, EnrichedEvent, RawEvent, TokenStatus};
use rdkafka::Message;

use crate::harness::*;

/// Events `from..to`, every tenth a share whose token a later visit uses.
fn events(from: usize, to: usize) -> Vec<RawEvent> {
    (from..to)
        .map(|i| {
            let mut event = pageview(&format!("event-{i}"), &format!("visitor-{}", i % 17));
            event.referrer = (i % 3 == 0).then(|| "https://www.bing.com/".to_owned());
            event
        })
        .collect()
}

async fn enriched_ids(topics: &Topics) -> (Vec<EnrichedEvent>, HashSet<String>) {
    let codec = Codec::<EnrichedEvent>::new().expect("codec");
    let events: Vec<EnrichedEvent> = read_committed(&topics.names.enriched)
        .await
        .iter()
        .map(|m| codec.decode(m.payload().expect("payload")).expect("decode"))
        .collect();
    let ids = events.iter().map(|e| e.event_id.clone()).collect();
    (events, ids)
}

async fn restart_mid_stream(graceful: bool) {
    let topics = Topics::create(if graceful { "restart" } else { "crash" }).await;
    let group = unique("it-enrich-restart");
    let shared = token(7);
    let mut first = events(0, 400);
    first.push(share("share-before", "sharer", &shared, "email"));
    produce_raw(&topics, &first).await;

    let service = Service::start(config(&topics, &group)).await;
    service.wait_ready().await;
    // More events arrive while the first instance works; it stops halfway.
    let second = events(400, 800);
    let writer = {
        let topics = topics.names.raw.clone();
        let second = second.clone();
        tokio::spawn(async move {
            for chunk in second.chunks(50) {
                produce_raw_to(&topics, chunk).await;
            }
        })
    };
    eventually("the first instance to commit some events", || async {
        read_committed(&topics.names.enriched).await.len() >= 100
    })
    .await;
    if graceful {
        service.stop().await;
    } else {
        service.kill().await;
    }
    writer.await.expect("writer");
    let (partial, _) = enriched_ids(&topics).await;

    let mut late = Vec::new();
    let mut visit = pageview("visit-after-restart", "reader");
    visit.landing_token = Some(shared.clone());
    late.push(visit);
    // A tracker retry of an event the first instance committed.
    late.push(events(1, 2).remove(0));
    produce_raw(&topics, &late).await;

    let service = Service::start(config(&topics, &group)).await;
    wait_caught_up(&topics, &group).await;
    let (enriched, ids) = enriched_ids(&topics).await;
    assert_eq!(enriched.len(), ids.len(), "no event enriched twice");
    let expected: HashSet<String> = first
        .iter()
        .chain(&second)
        .chain(&late)
        .map(|e| e.event_id.clone())
        .collect();
    assert_eq!(ids, expected, "no event lost");
    let visit = enriched
        .iter()
        .find(|e| e.event_id == "visit-after-restart")
        .expect("visit");
    assert_eq!(
        visit.token_status,
        TokenStatus::Explicit,
        "share restored from the shares topic"
    );
    assert_eq!(visit.landing_share_target.as_deref(), Some("email"));
    assert!(partial.len() < enriched.len(), "stopped mid-stream");
    eprintln!(
        "first instance committed {} of {} events",
        partial.len(),
        enriched.len()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_neither_duplicates_nor_loses() {
    restart_mid_stream(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_neither_duplicates_nor_loses() {
    restart_mid_stream(false).await;
}
