//! The happy paths end to end: beacons, pixels and the tracker over real
//! HTTP, records on the real topic, decoded with the shared codec.

use std::net::IpAddr;

use lumen_ingest::privacy::VisitorHasher;
use lumen_schemas::{Codec, EventKind, RawEvent, ShareMethod};
use serde_json::json;

use crate::harness::{self, EphemeralTopic, SECRET, Service};

const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) WhatsApp/2.24";

#[tokio::test(flavor = "multi_thread")]
async fn beacons_become_avro_records_keyed_by_token_or_visitor() {
    let topic = EphemeralTopic::create("pipeline").await;
    let service = Service::start(harness::config(&topic.name)).await;
    service.wait_ready(200).await;

    let batch = json!([
        {"site_id": "demo", "kind": "pageview", "url": "http://localhost:3000/story?ls=AcB3bAEjRWeJq83Q&utm_source=wa",
         "referrer": null, "minted_token": "AcB3bAEjRWeJq83R", "sent_at": 1_764_417_600_000_i64},
        {"event_id": "0192f0c1-7a2b-7cde-8f00-112233445566", "site_id": "demo", "kind": "share",
         "url": "http://localhost:3000/story", "share_token": "AcB3bAEjRWeJq83R",
         "share_method": "native", "parent_token": "AcB3bAEjRWeJq83Q"},
        {"site_id": "demo", "kind": "pageview", "url": "http://localhost:3000/"}
    ]);
    let answer = harness::post(
        service.public,
        &[
            ("Content-Type", "text/plain;charset=UTF-8"),
            ("Origin", "http://localhost:3000"),
            ("User-Agent", UA),
            ("X-Forwarded-For", "198.51.100.77"),
        ],
        batch.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer);
    assert_eq!(answer.json(), json!({"accepted": 3, "rejected": 0}));
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    let records = topic.consume(3);
    assert_eq!(records.len(), 3);
    let codec = Codec::<RawEvent>::new().expect("codec");
    let mut events: Vec<(String, RawEvent)> = records
        .iter()
        .map(|(key, payload)| {
            let peer: &str = "127.0.0.1";
            assert!(
                !payload.windows(peer.len()).any(|w| w == peer.as_bytes()),
                "the client IP never reaches Kafka"
            );
            (
                String::from_utf8(key.clone()).expect("utf-8 key"),
                codec.decode(payload).expect("Avro"),
            )
        })
        .collect();
    events.sort_by_key(|(_, event)| (event.kind == EventKind::Share, event.url.len()));

    // The untrusted peer's X-Forwarded-For is ignored: the socket address counts.
    let expected_visitor = |event: &RawEvent| {
        VisitorHasher::new(SECRET).visitor_id(
            "demo",
            "127.0.0.1".parse::<IpAddr>().expect("ip"),
            UA,
            event.received_at,
        )
    };
    let (key, home) = &events[0];
    assert_eq!(home.url, "http://localhost:3000/");
    assert_eq!(home.visitor_id, expected_visitor(home));
    assert_eq!(key, &home.visitor_id, "no token: keyed by visitor");
    assert_eq!(home.user_agent, UA);
    assert_eq!(
        uuid::Uuid::parse_str(&home.event_id)
            .expect("uuid")
            .get_version_num(),
        7
    );

    let (key, landing) = &events[1];
    assert_eq!(landing.url, "http://localhost:3000/story?utm_source=wa");
    assert_eq!(landing.landing_token.as_deref(), Some("AcB3bAEjRWeJq83Q"));
    assert_eq!(landing.minted_token.as_deref(), Some("AcB3bAEjRWeJq83R"));
    assert_eq!(landing.referrer, None);
    assert_eq!(landing.sent_at, Some(1_764_417_600_000));
    assert_eq!(key, "AcB3bAEjRWeJq83Q", "keyed by landing token");

    let (key, share) = &events[2];
    assert_eq!(share.event_id, "0192f0c1-7a2b-7cde-8f00-112233445566");
    assert_eq!(share.share_method, Some(ShareMethod::Native));
    assert_eq!(share.parent_token.as_deref(), Some("AcB3bAEjRWeJq83Q"));
    assert_eq!(key, "AcB3bAEjRWeJq83R", "keyed by share token");
    assert_eq!(share.visitor_id, home.visitor_id, "same reader, same day");

    let metrics =
        String::from_utf8(harness::get(service.admin, "/metrics", &[]).await.body).expect("text");
    for line in [
        "lumen_ingest_events_total{kind=\"pageview\",outcome=\"accepted\"} 2",
        "lumen_ingest_events_total{kind=\"share\",outcome=\"accepted\"} 1",
        "lumen_ingest_requests_total{route=\"/v1/events\",status=\"202\"} 1",
        "lumen_ingest_produce_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pixels_cors_and_the_tracker_over_http() {
    let topic = EphemeralTopic::create("pixels").await;
    let tracker = std::env::temp_dir().join(format!("lumen-it-t-{}.js", std::process::id()));
    std::fs::write(&tracker, b"(function(){/* lumen */})();").expect("tracker file");
    let mut config = harness::config(&topic.name);
    config.http.tracker_file = tracker.clone();
    let service = Service::start(config).await;

    let query = "site_id=demo&kind=pageview&url=http%3A%2F%2Flocalhost%2Fnewsletter";
    let gif = harness::get(
        service.public,
        &format!("/p.gif?{query}"),
        &[("User-Agent", UA)],
    )
    .await;
    assert_eq!(gif.status, 200);
    assert_eq!(gif.header("content-type"), Some("image/gif"));
    assert_eq!(gif.body, lumen_ingest::routes::PIXEL_GIF);
    let no_content = harness::get(service.public, &format!("/p?{query}"), &[]).await;
    assert_eq!(no_content.status, 204);
    assert_eq!(topic.consume(2).len(), 2);

    let preflight = harness::raw(
        service.public,
        &harness::request(
            "OPTIONS",
            "/v1/events",
            &[
                ("Origin", "http://127.0.0.1:5173"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://127.0.0.1:5173")
    );
    let foreign = harness::post(
        service.public,
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://evil.example"),
        ],
        br#"{"site_id":"demo","kind":"pageview","url":"http://localhost/"}"#,
    )
    .await;
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.json()["reason"], "origin_not_allowed");

    let script = harness::get(service.public, "/t.js", &[]).await;
    assert_eq!(script.status, 200);
    assert_eq!(script.body, b"(function(){/* lumen */})();");
    let etag = script.header("etag").expect("etag").to_owned();
    assert!(
        script
            .header("cache-control")
            .expect("cache")
            .contains("max-age")
    );
    let cached = harness::get(service.public, "/t.js", &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status, 304);

    assert_eq!(topic.record_count(), 2, "the refused beacon was not stored");
    service.stop().await;
    let _ = std::fs::remove_file(tracker);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_tracker_file_is_a_404_with_a_reason() {
    let topic = EphemeralTopic::create("no-tracker").await;
    let mut config = harness::config(&topic.name);
    config.http.tracker_file = "/nonexistent/t.js".into();
    let service = Service::start(config).await;
    let answer = harness::get(service.public, "/t.js", &[]).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["reason"], "tracker_missing");
    service.stop().await;
}
