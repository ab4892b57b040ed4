//! From request bytes to wire events: the content type and encoding checks,
//! the body size and time limits, gzip decompression that stops at the
//! decompressed limit (a gzip bomb costs at most that much), and JSON (one
//! object or an array of at most `--max-batch-events`) into [`WireEvent`]s.
//!
//! Each array element is decoded on its own so that one malformed event is
//! rejected alone. Field semantics are checked later, in `validate`.
//! Unknown fields are ignored, so an older ingest accepts a newer tracker's
//! events.

use std::cell::Cell;
use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::{Rejection, RequestError};

/// An event as the tracker sends it; every field optional at this stage.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WireEvent {
    /// Client-chosen UUID (deduplication key), when any.
    pub event_id: Option<String>,
    /// The publisher's site id.
    pub site_id: Option<String>,
    /// `pageview` or `share`.
    pub kind: Option<String>,
    /// Page URL.
    pub url: Option<String>,
    /// `None`: absent (take the `Referer` header); `Some(None)`: explicitly
    /// no referrer (`null`, or empty).
    #[serde(deserialize_with = "present")]
    pub referrer: Option<Option<String>>,
    /// Client clock, Unix milliseconds.
    pub sent_at: Option<i64>,
    /// Pageviews: the token minted for this view.
    pub minted_token: Option<String>,
    /// Pageviews: the token the URL arrived with.
    pub landing_token: Option<String>,
    /// Pageviews: an app webview the user agent hides.
    pub webview: Option<String>,
    /// Shares: the shared token.
    pub share_token: Option<String>,
    /// Shares: `copy`, `button` or `native`.
    pub share_method: Option<String>,
    /// Shares: the button's network.
    pub share_target: Option<String>,
    /// Shares: the token the sharer arrived with.
    pub parent_token: Option<String>,
}

/// Tells "field present with null" from "field absent" (serde's `default`
/// covers the absent case).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Checks `Content-Type` (JSON or text/plain, what `sendBeacon` sends) and
/// returns whether the body is gzip.
pub fn check_headers(headers: &HeaderMap) -> Result<bool, RequestError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    if !matches!(
        media_type.as_deref(),
        Some("application/json" | "text/plain")
    ) {
        return Err(RequestError::UnsupportedMediaType);
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().map(|v| v.trim().to_ascii_lowercase()));
    match encoding {
        None => Ok(false),
        Some(Ok(encoding)) => match encoding.as_str() {
            "" | "identity" => Ok(false),
            "gzip" | "x-gzip" => Ok(true),
            _ => Err(RequestError::UnsupportedEncoding),
        },
        Some(Err(_)) => Err(RequestError::UnsupportedEncoding),
    }
}

/// Reads the body, refusing more than `max_bytes` (early, from
/// `Content-Length`, when the client announces it) or a body that takes
/// longer than `timeout` to arrive.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes, RequestError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > max_bytes as u64) {
        return Err(RequestError::BodyTooLarge);
    }
    let collect = Limited::new(body, max_bytes).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_elapsed) => Err(RequestError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(RequestError::BodyTooLarge),
        Ok(Err(_)) => Err(RequestError::BodyRead),
    }
}

/// Gunzips `body`, stopping as soon as the output exceeds `max_bytes`.
pub fn gunzip(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, RequestError> {
    let mut output = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes));
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut output)
        .map_err(|_| RequestError::BadGzip)?;
    if output.len() > max_bytes {
        return Err(RequestError::DecompressedTooLarge);
    }
    Ok(output)
}

/// The body as it is before validation: one slot per event, the event or
/// why it could not be read.
pub type Decoded = Vec<Result<WireEvent, Rejection>>;

/// Decodes a request body (after decompression) into wire events.
pub fn parse_events(json: &[u8], max_events: usize) -> Result<Decoded, RequestError> {
    let first = json.iter().find(|byte| !byte.is_ascii_whitespace());
    let raws: Vec<&RawValue> = match first {
        Some(b'{') => vec![serde_json::from_slice(json).map_err(|_| RequestError::MalformedJson)?],
        Some(b'[') => {
            let overflow = Cell::new(false);
            let seed = BoundedArray {
                max: max_events,
                overflow: &overflow,
            };
            let mut deserializer = serde_json::Deserializer::from_slice(json);
            let parsed = seed
                .deserialize(&mut deserializer)
                .and_then(|raws| deserializer.end().map(|()| raws));
            match parsed {
                Ok(raws) => raws,
                Err(_) if overflow.get() => return Err(RequestError::TooManyEvents),
                Err(_) => return Err(RequestError::MalformedJson),
            }
        }
        Some(_) => {
            // Valid JSON of another type is a different mistake than garbage.
            return Err(match serde_json::from_slice::<&RawValue>(json) {
                Ok(_) => RequestError::NotObjectOrArray,
                Err(_) => RequestError::MalformedJson,
            });
        }
        None => return Err(RequestError::MalformedJson),
    };
    if raws.is_empty() {
        return Err(RequestError::EmptyBatch);
    }
    Ok(raws
        .into_iter()
        .map(|raw| serde_json::from_str(raw.get()).map_err(|_| Rejection::InvalidEvent))
        .collect())
}

/// Decodes a pixel's query string into one wire event.
pub fn parse_query(query: &str) -> Result<WireEvent, RequestError> {
    serde_urlencoded::from_str(query).map_err(|_| RequestError::InvalidQuery)
}

/// Collects array elements as raw JSON, failing (and flagging `overflow`)
/// at element `max + 1` so a huge array is never materialised.
struct BoundedArray<'a> {
    max: usize,
    overflow: &'a Cell<bool>,
}

impl<'de, 'a> DeserializeSeed<'de> for BoundedArray<'a> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, 'a> Visitor<'de> for BoundedArray<'a> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(formatter, "an array of at most {} events", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut raws = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(self.max));
        while let Some(raw) = seq.next_element()? {
            if raws.len() == self.max {
                self.overflow.set(true);
                return Err(serde::de::Error::custom("too many events"));
            }
            raws.push(raw);
        }
        Ok(raws)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[rstest]
    #[case(Some("application/json"), None, Ok(false))]
    #[case(Some("text/plain;charset=UTF-8"), None, Ok(false))]
    #[case(Some("Application/JSON; charset=utf-8"), Some("gzip"), Ok(true))]
    #[case(Some("application/json"), Some("identity"), Ok(false))]
    #[case(Some("application/json"), Some("br"), Err("unsupported_encoding"))]
    #[case(
        Some("application/x-www-form-urlencoded"),
        None,
        Err("unsupported_media_type")
    )]
    #[case(None, None, Err("unsupported_media_type"))]
    fn content_headers(
        #[case] content_type: Option<&'static str>,
        #[case] encoding: Option<&'static str>,
        #[case] expected: Result<bool, &str>,
    ) {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        }
        if let Some(value) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
        }
        assert_eq!(check_headers(&headers).map_err(|e| e.reason()), expected);
    }

    #[test]
    fn gunzip_round_trips_and_stops_at_the_limit() {
        let json = br#"{"site_id":"demo"}"#;
        assert_eq!(gunzip(&gzip(json), 100).expect("gunzip"), json);
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "a bomb is small on the wire");
        assert!(matches!(
            gunzip(&bomb, 4 * 1024 * 1024),
            Err(RequestError::DecompressedTooLarge)
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(RequestError::BadGzip)
        ));
    }

    #[test]
    fn one_object_or_an_array() {
        let one = parse_events(br#" {"site_id":"demo","kind":"pageview"} "#, 10).expect("one");
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].as_ref().expect("event").site_id.as_deref(),
            Some("demo")
        );
        let many = parse_events(
            br#"[{"site_id":"a"}, 5, {"url": 7}, {"site_id":"b","x":1}]"#,
            10,
        )
        .expect("many");
        assert_eq!(many.len(), 4);
        assert!(many[0].is_ok());
        assert_eq!(many[1], Err(Rejection::InvalidEvent));
        assert_eq!(many[2], Err(Rejection::InvalidEvent));
        assert!(many[3].is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn referrer_absent_null_or_given() {
        let decoded = parse_events(
            br#"[{}, {"referrer": null}, {"referrer": "https://a.example/"}]"#,
            10,
        )
        .expect("events");
        let referrers: Vec<_> = decoded
            .into_iter()
            .map(|event| event.expect("event").referrer)
            .collect();
        assert_eq!(
            referrers,
            [None, Some(None), Some(Some("https://a.example/".into()))]
        );
    }

    #[rstest]
    #[case(b"", "malformed_json")]
    #[case(b"   ", "malformed_json")]
    #[case(b"{", "malformed_json")]
    #[case(b"[{}] trailing", "malformed_json")]
    #[case(b"{} {}", "malformed_json")]
    #[case(b"\"string\"", "not_object_or_array")]
    #[case(b"42", "not_object_or_array")]
    #[case(b"nul\x00l", "malformed_json")]
    #[case(b"[]", "empty_batch")]
    #[case(b"[{},{},{},{}]", "too_many_events")]
    #[case(b"{\"url\": \"\xff\xfe\"}", "malformed_json")]
    fn unusable_bodies(#[case] body: &[u8], #[case] reason: &str) {
        let error = parse_events(body, 3).expect_err("unusable");
        assert_eq!(error.reason(), reason);
    }

    #[test]
    fn deep_nesting_is_a_rejected_event_not_a_stack_overflow() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let decoded = parse_events(deep.as_bytes(), 10).expect("one element");
        assert_eq!(decoded, vec![Err(Rejection::InvalidEvent)]);
        let deep_field = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let decoded = parse_events(deep_field.as_bytes(), 10).expect("one object");
        assert_eq!(
            decoded,
            vec![Ok(WireEvent::default())],
            "unknown fields are skipped"
        );
    }

    #[test]
    fn a_huge_array_stops_at_the_limit() {
        let huge = format!("[{}{{}}]", "{},".repeat(1_000_000));
        assert_eq!(
            parse_events(huge.as_bytes(), 500)
                .expect_err("huge")
                .reason(),
            "too_many_events"
        );
    }

    #[test]
    fn ten_thousand_fields_are_read_and_ignored() {
        let fields: Vec<String> = (0..10_000).map(|i| format!("\"f{i}\":{i}")).collect();
        let body = format!("{{\"site_id\":\"demo\",{}}}", fields.join(","));
        let decoded = parse_events(body.as_bytes(), 10).expect("decoded");
        assert_eq!(
            decoded[0].as_ref().expect("event").site_id.as_deref(),
            Some("demo")
        );
    }

    #[test]
    fn query_strings() {
        let event = parse_query(
            "site_id=demo&kind=pageview&url=https%3A%2F%2Fa.example%2F&sent_at=5&referrer=",
        )
        .expect("query");
        assert_eq!(event.url.as_deref(), Some("https://a.example/"));
        assert_eq!(event.sent_at, Some(5));
        assert_eq!(event.referrer, Some(Some(String::new())));
        assert_eq!(parse_query("site_id=demo").expect("absent").referrer, None);
        assert!(parse_query("sent_at=soon").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_events(&bytes, 500);
            let _ = gunzip(&bytes, 4096);
        }

        #[test]
        fn arbitrary_json_never_panics(json in arbitrary_json()) {
            let text = json.to_string();
            let _ = parse_events(text.as_bytes(), 500);
        }

        #[test]
        fn arbitrary_query_strings_never_panic(query in ".{0,256}") {
            let _ = parse_query(&query);
        }
    }

    /// Any JSON value, with event-like field names mixed in so that some of
    /// them reach the per-field decoding.
    pub(crate) fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,24}".prop_map(serde_json::Value::from),
        ];
        let key = prop_oneof![
            Just("site_id".to_owned()),
            Just("kind".to_owned()),
            Just("url".to_owned()),
            Just("referrer".to_owned()),
            Just("sent_at".to_owned()),
            Just("share_token".to_owned()),
            ".{0,8}",
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }
}
