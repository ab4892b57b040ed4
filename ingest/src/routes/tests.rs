//! The HTTP layer against the recording producer: every endpoint, CORS, the
//! site allow-list, gzip, the limits, partial batches and hostile input.

use std::io::Write;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use flate2::write::GzEncoder;
use http_body_util::BodyExt;
use proptest::prelude::*;
use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::produce::{FakeFailure, RecordingProducer};

const PEER: &str = "203.0.113.7:50000";
const ORIGIN: &str = "http://localhost:8080";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";

pub(crate) fn state(producer: RecordingProducer) -> Arc<AppState<RecordingProducer>> {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_decompressed_bytes: 256 * 1024,
        max_batch_events: 10,
        ..Limits::default()
    };
    Arc::new(AppState {
        producer: Arc::new(producer),
        codec: Codec::new().expect("codec"),
        sites: Sites::parse(include_str!("../../sites.example.json")).expect("sites"),
        hasher: VisitorHasher::new("0123456789abcdef"),
        tracker: TrackerScript::from_bytes(&b"/* t.js */"[..]),
        metrics: Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        limits,
        trusted_proxies: Vec::new(),
        body_timeout: Duration::from_secs(5),
        retry_after_seconds: 3,
    })
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn send(
    state: &Arc<AppState<RecordingProducer>>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Answer {
    let mut request = HttpRequest::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.into()).expect("request");
    let response = Public::new(state.clone())
        .answer(request, PEER.parse().expect("peer"))
        .await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: body.to_vec(),
    }
}

async fn post_json(state: &Arc<AppState<RecordingProducer>>, body: impl Into<Body>) -> Answer {
    send(
        state,
        Method::POST,
        "/v1/events",
        &[("content-type", "application/json"), ("user-agent", UA)],
        body,
    )
    .await
}

fn pageview() -> Value {
    json!({"site_id": "demo", "kind": "pageview", "url": "http://localhost:8080/a?ls=AcB3bAEjRWeJq83Q",
           "referrer": "https://www.google.com/", "sent_at": 1_764_417_600_000_i64,
           "minted_token": "AcB3bAEjRWeJq83R", "webview": "telegram"})
}

fn share() -> Value {
    json!({"event_id": "0192f0c1-7a2b-7cde-8f00-112233445566", "site_id": "demo", "kind": "share",
           "url": "http://localhost:8080/a", "share_token": "AcB3bAEjRWeJq83R",
           "share_method": "button", "share_target": "whatsapp"})
}

fn decoded(producer: &RecordingProducer) -> Vec<(String, RawEvent)> {
    let codec = Codec::<RawEvent>::new().expect("codec");
    producer
        .sent()
        .into_iter()
        .map(|record| (record.key, codec.decode(&record.payload).expect("Avro")))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test]
async fn a_batch_is_stored_as_avro_keyed_by_token_or_visitor() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let answer = post_json(&state, json!([pageview(), share()]).to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json());
    assert_eq!(answer.json(), json!({"accepted": 2, "rejected": 0}));

    let events = decoded(&producer);
    let (key, view) = &events[0];
    assert_eq!(
        view.url, "http://localhost:8080/a",
        "?ls= moved to landing_token"
    );
    assert_eq!(view.landing_token.as_deref(), Some("AcB3bAEjRWeJq83Q"));
    assert_eq!(key, "AcB3bAEjRWeJq83Q");
    assert_eq!(view.user_agent, UA);
    assert_eq!(view.referrer.as_deref(), Some("https://www.google.com/"));
    assert_eq!(view.webview.as_deref(), Some("telegram"));
    assert_eq!(view.sent_at, Some(1_764_417_600_000));
    assert_eq!(
        view.visitor_id,
        state.hasher.visitor_id(
            "demo",
            "203.0.113.7".parse().expect("ip"),
            UA,
            view.received_at
        )
    );
    let (key, shared) = &events[1];
    assert_eq!(key, "AcB3bAEjRWeJq83R");
    assert_eq!(shared.event_id, "0192f0c1-7a2b-7cde-8f00-112233445566");
    for record in producer.sent() {
        let text = String::from_utf8_lossy(&record.payload);
        assert!(
            !text.contains("203.0.113.7"),
            "the IP never leaves the process"
        );
    }
}

#[tokio::test]
async fn send_beacon_text_plain_and_gzip_are_accepted() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let beacon = send(
        &state,
        Method::POST,
        "/v1/events",
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", ORIGIN),
        ],
        pageview().to_string(),
    )
    .await;
    assert_eq!(beacon.status, StatusCode::ACCEPTED);
    assert_eq!(beacon.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert_eq!(
        beacon.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS],
        "Retry-After"
    );
    let gzipped = send(
        &state,
        Method::POST,
        "/v1/events",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        gzip(json!([share()]).to_string().as_bytes()),
    )
    .await;
    assert_eq!(gzipped.status, StatusCode::ACCEPTED);
    assert_eq!(producer.sent().len(), 2);
}

#[tokio::test]
async fn a_partial_batch_names_the_rejected_events() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let mut bad_share = share();
    bad_share["share_method"] = json!("carrier-pigeon");
    let body = json!([pageview(), 42, bad_share, {"site_id": "demo", "kind": "pageview"}]);
    let answer = post_json(&state, body.to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(
        answer.json(),
        json!({"accepted": 1, "rejected": 3, "errors": [
            {"index": 1, "reason": "invalid_event"},
            {"index": 2, "reason": "invalid_share_method"},
            {"index": 3, "reason": "missing_url"}]})
    );
    assert_eq!(producer.sent().len(), 1);
    let events = &state.metrics.events;
    assert_eq!(events.with_label_values(&["pageview", "accepted"]).get(), 1);
    assert_eq!(
        events
            .with_label_values(&["unknown", "invalid_event"])
            .get(),
        1
    );
    assert_eq!(
        events
            .with_label_values(&["share", "invalid_share_method"])
            .get(),
        1
    );
}

#[tokio::test]
async fn all_rejected_is_a_400_with_the_reasons() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let answer = post_json(&state, json!([{"site_id": "demo"}]).to_string()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.reason(), "all_rejected");
    assert_eq!(
        answer.json()["errors"],
        json!([{"index": 0, "reason": "missing_kind"}])
    );
    assert!(producer.sent().is_empty());
}

#[rstest]
#[case::unknown_site(json!({"site_id": "nope", "kind": "pageview", "url": "http://localhost/"}), Some(ORIGIN), "unknown_site")]
#[case::foreign_origin(pageview(), Some("https://evil.example"), "origin_not_allowed")]
#[case::null_origin(pageview(), Some("null"), "origin_not_allowed")]
#[case::other_sites_origin(pageview(), Some("https://dailyplanet.example"), "origin_not_allowed")]
#[tokio::test]
async fn the_site_allow_list_is_enforced(
    #[case] event: Value,
    #[case] origin: Option<&str>,
    #[case] reason: &str,
) {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(origin.map(|origin| ("origin", origin)));
    let answer = send(
        &state,
        Method::POST,
        "/v1/events",
        &headers,
        event.to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.reason(), reason);
    assert!(producer.sent().is_empty());
    assert_eq!(
        state
            .metrics
            .request_rejections
            .with_label_values(&[reason])
            .get(),
        1,
        "counted"
    );
}

#[tokio::test]
async fn preflight_allows_configured_origins_only() {
    let state = state(RecordingProducer::default());
    let request_headers = [
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let mut allowed = request_headers.to_vec();
    allowed.push(("origin", "http://127.0.0.1:5173"));
    let answer = send(
        &state,
        Method::OPTIONS,
        "/v1/events",
        &allowed,
        Body::empty(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://127.0.0.1:5173"
    );
    assert!(
        answer.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii")
            .contains("Content-Type")
    );
    assert_eq!(answer.headers[header::VARY], "Origin");

    let mut denied = request_headers.to_vec();
    denied.push(("origin", "https://evil.example"));
    let answer = send(
        &state,
        Method::OPTIONS,
        "/v1/events",
        &denied,
        Body::empty(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn pixels_store_one_event_from_the_query() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let query = "site_id=demo&kind=pageview&url=http%3A%2F%2Flocalhost%2Fmail&referrer=";
    let gif = send(
        &state,
        Method::GET,
        &format!("/p.gif?{query}"),
        &[("user-agent", UA)],
        Body::empty(),
    )
    .await;
    assert_eq!(gif.status, StatusCode::OK);
    assert_eq!(gif.headers[header::CONTENT_TYPE], "image/gif");
    assert_eq!(gif.body, PIXEL_GIF);
    assert!(
        gif.headers[header::CACHE_CONTROL]
            .to_str()
            .expect("ascii")
            .contains("no-store")
    );
    let no_content = send(
        &state,
        Method::GET,
        &format!("/p?{query}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(no_content.status, StatusCode::NO_CONTENT);
    let events = decoded(&producer);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].1.url, "http://localhost/mail");
    assert_eq!(events[0].1.referrer, None);

    let bad = send(
        &state,
        Method::GET,
        "/p.gif?sent_at=yesterday",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.reason(), "invalid_query");
    let empty = send(&state, Method::GET, "/p.gif", &[], Body::empty()).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(producer.sent().len(), 2);
}

#[tokio::test]
async fn the_tracker_is_served_with_etag_and_304() {
    let state = state(RecordingProducer::default());
    let first = send(&state, Method::GET, "/t.js", &[], Body::empty()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, b"/* t.js */");
    let etag = first.headers[header::ETAG]
        .to_str()
        .expect("ascii")
        .to_owned();
    let again = send(
        &state,
        Method::GET,
        "/t.js",
        &[("if-none-match", &etag)],
        Body::empty(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
}

#[rstest]
#[case::queue_full(FakeFailure::QueueFull)]
#[case::timed_out(FakeFailure::TimedOut)]
#[tokio::test]
async fn kafka_trouble_is_a_503_with_retry_after(#[case] failure: FakeFailure) {
    let producer = RecordingProducer::failing_at(1, failure);
    let state = state(producer.clone());
    let answer = post_json(&state, json!([pageview(), share()]).to_string()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers[header::RETRY_AFTER], "3");
    assert_eq!(answer.reason(), "kafka_unavailable");
    assert_eq!(
        state
            .metrics
            .events
            .with_label_values(&["pageview", "not_stored"])
            .get(),
        1
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_4xx() {
    let state = state(RecordingProducer::default());
    let missing = send(&state, Method::GET, "/wp-admin", &[], Body::empty()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.reason(), "not_found");
    let wrong_method = send(&state, Method::GET, "/v1/events", &[], Body::empty()).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.reason(), "method_not_allowed");
    let counted = |route: &str, status: &str| {
        state
            .metrics
            .requests
            .with_label_values(&[route, status])
            .get()
    };
    assert_eq!(counted("/v1/events", "405"), 1);
    assert_eq!(counted("other", "404"), 1);
}

/// Pixel `GET`s skip the router (`Public`); the router still answers the
/// pixels' other methods as before.
#[tokio::test]
async fn pixels_answer_other_methods_as_the_router_does() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let query = "?site_id=demo&kind=pageview&url=http%3A%2F%2Flocalhost%2F";
    for path in ["/p", "/p.gif"] {
        let wrong_method = send(&state, Method::POST, path, &[], Body::empty()).await;
        assert_eq!(
            wrong_method.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path}"
        );
        assert_eq!(wrong_method.reason(), "method_not_allowed");
        let head = send(
            &state,
            Method::HEAD,
            &format!("{path}{query}"),
            &[],
            Body::empty(),
        )
        .await;
        assert!(head.status.is_success(), "{path}: {}", head.status);
        assert!(head.body.is_empty(), "{path}");
    }
    assert_eq!(
        producer.sent().len(),
        2,
        "a HEAD stores its event, as a GET"
    );
}

/// A hostile request body: name, request headers, body, status, reason.
type Hostile = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
);

fn hostile_bodies() -> Vec<Hostile> {
    let json_headers = vec![("content-type", "application/json")];
    let gzip_headers = vec![
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let many_fields: Vec<String> = (0..10_000).map(|i| format!("\"f{i}\":{i}")).collect();
    vec![
        (
            "malformed",
            json_headers.clone(),
            b"{\"site_id\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "wrong top-level type",
            json_headers.clone(),
            b"\"pageview\"".to_vec(),
            400,
            "not_object_or_array",
        ),
        (
            "wrong field types",
            json_headers.clone(),
            br#"{"site_id": 5, "kind": []}"#.to_vec(),
            400,
            "all_rejected",
        ),
        (
            "invalid utf-8",
            json_headers.clone(),
            b"{\"site_id\": \"\xc3\x28\"}".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "raw NUL bytes",
            json_headers.clone(),
            b"{\"site_id\": \"demo\"}\0\0".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "escaped NUL",
            json_headers.clone(),
            br#"{"site_id": "demo", "kind": "pageview", "url": "http://localhost/\u0000"}"#
                .to_vec(),
            400,
            "all_rejected",
        ),
        (
            "10 MB body",
            json_headers.clone(),
            vec![b' '; 10 * 1024 * 1024],
            413,
            "body_too_large",
        ),
        (
            "gzip bomb",
            gzip_headers.clone(),
            gzip(&vec![b' '; 20 * 1024 * 1024]),
            413,
            "decompressed_too_large",
        ),
        ("not gzip", gzip_headers, b"{}".to_vec(), 400, "bad_gzip"),
        (
            "10k fields",
            json_headers.clone(),
            format!("{{{}}}", many_fields.join(",")).into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "huge array",
            json_headers.clone(),
            format!("[{}{{}}]", "{},".repeat(20)).into_bytes(),
            413,
            "too_many_events",
        ),
        (
            "deep nesting",
            json_headers.clone(),
            format!("[{}{}]", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            400,
            "all_rejected",
        ),
        (
            "empty batch",
            json_headers.clone(),
            b"[]".to_vec(),
            400,
            "empty_batch",
        ),
        (
            "empty body",
            json_headers,
            Vec::new(),
            400,
            "malformed_json",
        ),
        (
            "form post",
            vec![("content-type", "application/x-www-form-urlencoded")],
            b"a=b".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "brotli",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            b"{}".to_vec(),
            415,
            "unsupported_encoding",
        ),
    ]
}

#[tokio::test]
async fn hostile_input_gets_its_documented_answer_and_nothing_reaches_kafka() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    for (name, headers, body, status, reason) in hostile_bodies() {
        let answer = send(&state, Method::POST, "/v1/events", &headers, body).await;
        assert_eq!(answer.status.as_u16(), status, "{name}");
        assert_eq!(answer.reason(), reason, "{name}");
    }
    assert!(producer.sent().is_empty());
    let ok = post_json(&state, pageview().to_string()).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "still serving");
}

#[tokio::test]
async fn a_long_user_agent_is_truncated_on_a_character_boundary() {
    let producer = RecordingProducer::default();
    let state = state(producer.clone());
    let long_ua = format!("Mozilla/5.0 {}", "é".repeat(2000));
    let answer = send(
        &state,
        Method::POST,
        "/v1/events",
        &[
            ("content-type", "application/json"),
            ("user-agent", &long_ua),
        ],
        pageview().to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let stored = &decoded(&producer)[0].1.user_agent;
    assert!(
        stored.len() <= 1024 && stored.len() > 1000,
        "{}",
        stored.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bodies_never_yield_a_5xx(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        gzipped in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let state = state(RecordingProducer::default());
        let mut headers = vec![("content-type", "application/json")];
        if gzipped {
            headers.push(("content-encoding", "gzip"));
        }
        let answer = runtime.block_on(send(&state, Method::POST, "/v1/events", &headers, body));
        prop_assert!(answer.status.is_client_error(), "{}", answer.status);
    }

    #[test]
    fn arbitrary_json_never_yields_a_5xx(json in crate::decode::tests::arbitrary_json()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let state = state(RecordingProducer::default());
        let answer = runtime.block_on(post_json(&state, json.to_string()));
        prop_assert!(!answer.status.is_server_error(), "{}", answer.status);
    }
}

#[tokio::test]
async fn a_request_dropped_mid_answer_leaves_the_in_flight_gauge() {
    let state = state(RecordingProducer::default());
    // A body that never ends: the answer waits for it until it is dropped.
    let (_sender, endless) =
        http_body_util::channel::Channel::<axum::body::Bytes, std::io::Error>::new(1);
    let endless = Body::new(endless);
    let request = HttpRequest::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header("content-type", "application/json")
        .body(endless)
        .expect("request");
    let public = Public::new(state.clone());
    let answer = public.answer(request, PEER.parse().expect("peer"));
    let waited = tokio::time::timeout(Duration::from_millis(50), answer).await;
    assert!(waited.is_err(), "the body never ends");
    assert_eq!(state.metrics.requests_in_flight.get(), 0);
}
