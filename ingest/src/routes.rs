//! The public HTTP API: `POST /v1/events`, the `/p.gif` and `/p` pixels,
//! `/t.js`, CORS with preflight, and the request counter. Handlers turn a
//! request into wire events (`decode`), check the site allow-list and each
//! event (`validate`), encode the accepted ones as Avro and answer only once
//! Kafka has acknowledged all of them (`produce`).
//!
//! Site rules apply per request: an event naming an unknown site, or a
//! browser `Origin` the event's site does not allow, refuses the whole
//! request with 403 (one page sends one site's events). Event rules apply
//! per event: the others are still accepted.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::IpNet;
use lumen_schemas::{Codec, EventKind, RawEvent};
use serde::Serialize;
use tower::ServiceExt;
use url::Url;

use crate::config::Limits;
use crate::decode::{self, Decoded};
use crate::error::{EventError, RequestError};
use crate::metrics::{Held, Metrics, ROUTES};
use crate::privacy::{VisitorHasher, client_ip};
use crate::produce::{Producer, Record};
use crate::sites::Sites;
use crate::tracker::TrackerScript;
use crate::validate::{RequestContext, validate};

/// A 1×1 transparent GIF.
pub const PIXEL_GIF: &[u8] = &[
    71, 73, 70, 56, 57, 97, 1, 0, 1, 0, 128, 0, 0, 0, 0, 0, 255, 255, 255, 33, 249, 4, 1, 0, 0, 0,
    0, 44, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 1, 68, 0, 59,
];
/// Browsers may cache a preflight answer this long (seconds).
const PREFLIGHT_MAX_AGE: &str = "86400";
/// What a tracker may send on a cross-origin `POST`.
const ALLOWED_HEADERS: &str = "Content-Type, Content-Encoding";
const ALLOWED_METHODS: &str = "POST, GET, OPTIONS";

/// Everything a request needs, built once at start-up.
pub struct AppState<P> {
    /// Where accepted events go.
    pub producer: Arc<P>,
    /// Avro encoder of raw events.
    pub codec: Codec<RawEvent>,
    /// Site allow-list.
    pub sites: Sites,
    /// Visitor ids.
    pub hasher: VisitorHasher,
    /// `/t.js`.
    pub tracker: TrackerScript,
    /// Counters.
    pub metrics: Metrics,
    /// Size limits.
    pub limits: Limits,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Longest body read.
    pub body_timeout: Duration,
    /// `Retry-After` of 503 answers, in seconds.
    pub retry_after_seconds: u64,
}

/// The JSON answer of an accepted request.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Events stored in Kafka.
    pub accepted: usize,
    /// Events refused.
    pub rejected: usize,
    /// Why each refused event was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<EventError>,
}

/// The public router (serve it with `ConnectInfo<SocketAddr>` in the
/// request extensions, as [`Public::answer`] does). Answers are not counted
/// here but in [`Public`].
pub fn router<P: Producer>(state: Arc<AppState<P>>) -> Router {
    Router::new()
        .route("/v1/events", post(collect::<P>).options(preflight::<P>))
        .route("/p.gif", get(pixel_gif::<P>))
        .route("/p", get(pixel_no_content::<P>))
        .route("/t.js", get(tracker::<P>))
        .fallback(|| async { RequestError::NotFound })
        .method_not_allowed_fallback(|| async { RequestError::MethodNotAllowed })
        .with_state(state)
}

/// The router with every answer counted by route and status, and the
/// requests in flight: what `server` serves.
///
/// The counting wraps the router instead of being one of its layers: an
/// axum `from_fn` middleware boxed a future and cloned the boxed route of
/// every request, and looked the route up in the request's extensions:
/// pixel requests took 54 µs of CPU each with it, 42 without, in the
/// benchmark's alternating runs. Every route is a literal path, so the path
/// itself names the route.
///
/// A pixel `GET` goes straight to its handler: the router would clone
/// itself, match the path, insert the peer, the matched path and the path
/// parameters into the request's extensions and box the handler's future
/// (4% of a pixel's CPU in `perf`; 62.9–71.3 → 44.8–56.5 µs per pixel in
/// alternating bench runs on a loaded machine). The router still answers
/// everything else (`HEAD`, other methods, other paths), so the answers
/// are the same.
pub struct Public<P> {
    router: Router,
    state: Arc<AppState<P>>,
}

impl<P: Producer> Public<P> {
    /// The router of `state`, counted in its metrics.
    pub fn new(state: Arc<AppState<P>>) -> Self {
        Self {
            router: router(state.clone()),
            state,
        }
    }

    /// The metrics requests are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Answers one request from `peer`.
    pub async fn answer(&self, mut request: Request, peer: SocketAddr) -> Response {
        let route = ROUTES
            .iter()
            .find(|route| **route == request.uri().path())
            .copied()
            .unwrap_or("other");
        let in_flight = Held::start(&self.state.metrics.requests_in_flight);
        let response = match (route, request.method() == Method::GET) {
            ("/p", true) => pixel(&self.state, peer, request, no_content()).await,
            ("/p.gif", true) => pixel(&self.state, peer, request, gif()).await,
            _ => {
                request.extensions_mut().insert(ConnectInfo(peer));
                match self.router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        };
        drop(in_flight);
        self.state
            .metrics
            .count_request(route, response.status().as_u16());
        response
    }
}

/// The browser's `Origin` header, as sent and parsed (`null` and garbage
/// do not parse, and are allowed nowhere).
struct Origin {
    raw: HeaderValue,
    parsed: Option<Url>,
}

impl Origin {
    fn of(headers: &HeaderMap) -> Option<Self> {
        let raw = headers.get(header::ORIGIN)?.clone();
        let parsed = raw.to_str().ok().and_then(|text| Url::parse(text).ok());
        Some(Self { raw, parsed })
    }
}

/// Adds CORS headers when some site allows the origin, so that the page can
/// read the answer, errors included.
fn with_cors(mut response: Response, origin: Option<&Origin>, sites: &Sites) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin
        && origin
            .parsed
            .as_ref()
            .is_some_and(|url| sites.any_allows_origin(url))
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.raw.clone());
        // The tracker backs off by ingest's Retry-After on a 503; browsers
        // hide every non-simple response header unless it is exposed.
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    response
}

#[tracing::instrument(skip_all, fields(route = "/v1/events"))]
async fn collect<P: Producer>(
    State(state): State<Arc<AppState<P>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // The headers borrowed from the request: axum's `HeaderMap` extractor
    // clones them.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let origin = Origin::of(headers);
    let result = async {
        let gzip = decode::check_headers(headers)?;
        let limits = &state.limits;
        let bytes =
            decode::read_body(headers, body, limits.max_body_bytes, state.body_timeout).await?;
        state.metrics.received_bytes.inc_by(bytes.len() as u64);
        let json = if gzip {
            Cow::Owned(decode::gunzip(&bytes, limits.max_decompressed_bytes)?)
        } else {
            Cow::Borrowed(bytes.as_ref())
        };
        let events = decode::parse_events(&json, limits.max_batch_events)?;
        state.ingest(events, headers, peer, origin.as_ref()).await
    }
    .await;
    let response = match result {
        Ok(summary) => (StatusCode::ACCEPTED, Json(summary)).into_response(),
        Err(error) => state.refuse(error),
    };
    with_cors(response, origin.as_ref(), &state.sites)
}

async fn preflight<P: Producer>(
    State(state): State<Arc<AppState<P>>>,
    headers: HeaderMap,
) -> Response {
    let origin = Origin::of(&headers);
    let allowed = origin
        .as_ref()
        .and_then(|origin| origin.parsed.as_ref())
        .is_some_and(|url| state.sites.any_allows_origin(url));
    if !allowed {
        return with_cors(
            state.refuse(RequestError::OriginNotAllowed),
            origin.as_ref(),
            &state.sites,
        );
    }
    let response = (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    )
        .into_response();
    with_cors(response, origin.as_ref(), &state.sites)
}

async fn pixel_gif<P: Producer>(
    State(state): State<Arc<AppState<P>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    pixel(&state, peer, request, gif()).await
}

async fn pixel_no_content<P: Producer>(
    State(state): State<Arc<AppState<P>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    pixel(&state, peer, request, no_content()).await
}

/// The answer of `/p.gif` once its event is stored.
fn gif() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "image/gif")],
        PIXEL_GIF,
    )
        .into_response()
}

/// The answer of `/p` once its event is stored.
fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// One event from the query string; `success` is the answer once stored.
/// Headers and query are borrowed from the request (axum's `HeaderMap` and
/// `RawQuery` extractors copy them).
#[tracing::instrument(skip_all, fields(route = "pixel"))]
async fn pixel<P: Producer>(
    state: &AppState<P>,
    peer: SocketAddr,
    request: Request,
    success: Response,
) -> Response {
    let (parts, _body) = request.into_parts();
    let headers = &parts.headers;
    let origin = Origin::of(headers);
    let result = async {
        let event = decode::parse_query(parts.uri.query().unwrap_or_default())?;
        state
            .ingest(vec![Ok(event)], headers, peer, origin.as_ref())
            .await
    }
    .await;
    let mut response = match result {
        Ok(_) => success,
        Err(error) => state.refuse(error),
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, max-age=0"),
    );
    response
}

async fn tracker<P: Producer>(
    State(state): State<Arc<AppState<P>>>,
    headers: HeaderMap,
) -> Response {
    state.tracker.respond(&headers)
}

/// The end of `s` at most `max` bytes in, on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn kind_label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Pageview => "pageview",
        EventKind::Share => "share",
    }
}

impl<P: Producer> AppState<P> {
    /// Counts and renders a refused request.
    fn refuse(&self, error: RequestError) -> Response {
        self.metrics
            .request_rejections
            .with_label_values(&[error.reason()])
            .inc();
        match &error {
            RequestError::Unavailable { source, .. } => {
                tracing::warn!(error = %source, "events not stored");
            }
            RequestError::Internal => tracing::error!("validated event could not be encoded"),
            _ => tracing::debug!(reason = error.reason(), "request refused"),
        }
        error.into_response()
    }

    /// Site gate, per-event validation, encoding and delivery.
    async fn ingest(
        &self,
        decoded: Decoded,
        headers: &HeaderMap,
        peer: SocketAddr,
        origin: Option<&Origin>,
    ) -> Result<Summary, RequestError> {
        for site_id in decoded
            .iter()
            .flatten()
            .filter_map(|e| e.site_id.as_deref())
        {
            let site = self.sites.get(site_id).ok_or(RequestError::UnknownSite)?;
            if let Some(origin) = origin
                && !origin
                    .parsed
                    .as_ref()
                    .is_some_and(|url| site.allows_origin(url))
            {
                return Err(RequestError::OriginNotAllowed);
            }
        }

        let user_agent = headers
            .get(header::USER_AGENT)
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
            .unwrap_or_default();
        let header_referrer = headers
            .get(header::REFERER)
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
            .filter(|referrer| referrer.len() <= self.limits.max_url_bytes);
        let ctx = RequestContext {
            sites: &self.sites,
            hasher: &self.hasher,
            client_ip: client_ip(peer, headers, &self.trusted_proxies),
            user_agent: truncate_utf8(&user_agent, self.limits.max_user_agent_bytes),
            header_referrer: header_referrer.as_deref(),
            received_at: now_ms(),
            max_url_bytes: self.limits.max_url_bytes,
        };

        let mut records = Vec::with_capacity(decoded.len());
        let mut kinds = Vec::with_capacity(decoded.len());
        let mut errors = Vec::new();
        for (index, slot) in decoded.into_iter().enumerate() {
            let sent_kind = match slot.as_ref().ok().and_then(|e| e.kind.as_deref()) {
                Some("pageview") => "pageview",
                Some("share") => "share",
                _ => "unknown",
            };
            match slot.and_then(|wire| validate(wire, &ctx)) {
                Ok(event) => {
                    let payload = self
                        .codec
                        .encode(&event)
                        .map_err(|_| RequestError::Internal)?;
                    records.push(Record {
                        key: event.partition_key().to_owned(),
                        payload,
                    });
                    kinds.push(kind_label(event.kind));
                }
                Err(rejection) => {
                    self.metrics.count_events(sent_kind, rejection.reason(), 1);
                    errors.push(EventError {
                        index,
                        reason: rejection.reason(),
                    });
                }
            }
        }
        if records.is_empty() {
            return Err(RequestError::AllRejected(errors));
        }

        let started = Instant::now();
        let sent = self.producer.send_all(records).await;
        self.metrics
            .producer_queue
            .set(i64::try_from(self.producer.queue_depth()).unwrap_or(i64::MAX));
        let outcome = match &sent {
            Ok(()) => {
                self.metrics
                    .produce_duration
                    .observe(started.elapsed().as_secs_f64());
                "accepted"
            }
            Err(error) => {
                self.metrics
                    .produce_errors
                    .with_label_values(&[error.stage(), error.tag()])
                    .inc();
                "not_stored"
            }
        };
        for kind in ["pageview", "share"] {
            let count = kinds.iter().filter(|k| **k == kind).count();
            self.metrics.count_events(kind, outcome, count as u64);
        }
        match sent {
            Ok(()) => Ok(Summary {
                accepted: kinds.len(),
                rejected: errors.len(),
                errors,
            }),
            Err(source) => Err(RequestError::Unavailable {
                source,
                retry_after_seconds: self.retry_after_seconds,
            }),
        }
    }
}

/// Server clock in Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
pub(crate) mod tests;
