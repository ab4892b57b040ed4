//! The traffic every section sends: a 50-pageview batch, a single pageview,
//! a pixel query, the headers a browser adds, and the Kafka records ingest
//! makes of the batch (for the bare producer, so that both send the same
//! bytes under the same keys).

use hyper::body::Bytes;
use hyper::{Method, StatusCode, header};
use lumen_ingest::decode::parse_events;
use lumen_ingest::privacy::VisitorHasher;
use lumen_ingest::produce::Record;
use lumen_ingest::sites::Sites;
use lumen_ingest::validate::{RequestContext, validate};
use lumen_schemas::{Codec, RawEvent};

use crate::load::Shot;

/// Events in a batch request.
pub const BATCH: usize = 50;
/// The visitor secret of the service under test (≥ 16 bytes).
pub const SECRET: &str = "benchmark-secret-0123";
/// A browser's `User-Agent`.
pub const USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)";
/// An origin `demo` in `sites.example.json` allows.
pub const ORIGIN: &str = "http://localhost:3000";
/// The sites file of the service under test.
pub const SITES: &str = include_str!("../../sites.example.json");

/// One pageview as the tracker sends it; each `index` lands with its own
/// token, so the batch's records spread over partitions like real traffic.
fn pageview(index: usize) -> String {
    format!(
        r#"{{"site_id":"demo","kind":"pageview","url":"http://localhost:3000/news/2026/story-{index}?ls=AcB3bAEjRWeJq{index:03}&utm_source=newsletter","referrer":"https://www.google.com/","sent_at":1764417600000,"minted_token":"AcB3bAEjRWeJq83R"}}"#
    )
}

/// A JSON array of [`BATCH`] pageviews.
pub fn batch_body() -> Bytes {
    let events: Vec<String> = (0..BATCH).map(pageview).collect();
    Bytes::from(format!("[{}]", events.join(",")))
}

/// `POST /v1/events` of `body` holding `events` events, as
/// `navigator.sendBeacon` sends it.
fn post(body: Bytes, events: usize) -> Shot {
    Shot {
        method: Method::POST,
        path: "/v1/events".into(),
        headers: vec![
            (header::CONTENT_TYPE, "text/plain;charset=UTF-8"),
            (header::ORIGIN, ORIGIN),
            (header::USER_AGENT, USER_AGENT),
        ],
        body,
        expect: StatusCode::ACCEPTED,
        events,
    }
}

/// `POST /v1/events` of the batch.
pub fn batch() -> Shot {
    post(batch_body(), BATCH)
}

/// `POST /v1/events` of one pageview.
pub fn single() -> Shot {
    post(Bytes::from(pageview(0)), 1)
}

/// `GET /p?…`: a no-JS pixel, answered 204 by ingest and the bare server alike.
pub fn pixel() -> Shot {
    Shot {
        method: Method::GET,
        path: "/p?site_id=demo&kind=pageview&url=http%3A%2F%2Flocalhost%3A3000%2Fnews%2F2026%2Fstory%3Fls%3DAcB3bAEjRWeJq83Q&referrer=https%3A%2F%2Fmail.google.com%2F".into(),
        headers: vec![(header::USER_AGENT, USER_AGENT)],
        body: Bytes::new(),
        expect: StatusCode::NO_CONTENT,
        events: 1,
    }
}

/// What ingest does to a request body between reading it and producing:
/// decode, validate, hash the visitor, encode as Avro.
pub struct Encoder {
    sites: Sites,
    hasher: VisitorHasher,
    codec: Codec<RawEvent>,
}

impl Encoder {
    /// Ingest's set-up with the service's sites and secret.
    pub fn new() -> Self {
        Self {
            sites: Sites::parse(SITES).expect("sites"),
            hasher: VisitorHasher::new(SECRET),
            codec: Codec::new().expect("codec"),
        }
    }

    /// The records ingest makes of `body` sent from `127.0.0.1` (the
    /// load's address): the same payload sizes, the same keys.
    pub fn records(&self, body: &[u8]) -> Vec<Record> {
        let ctx = RequestContext {
            sites: &self.sites,
            hasher: &self.hasher,
            client_ip: [127, 0, 0, 1].into(),
            user_agent: USER_AGENT,
            header_referrer: None,
            received_at: 1_764_417_600_000,
            max_url_bytes: 4096,
        };
        parse_events(body, BATCH)
            .expect("events")
            .into_iter()
            .map(|wire| {
                let event = validate(wire.expect("wire"), &ctx).expect("valid");
                Record {
                    key: event.partition_key().to_owned(),
                    payload: self.codec.encode(&event).expect("avro"),
                }
            })
            .collect()
    }
}
