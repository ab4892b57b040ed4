//! Errors of `lumen-ingest`: start-up errors ([`Error`]), request errors
//! ([`RequestError`], mapped to HTTP in exactly one place) and per-event
//! rejections ([`Rejection`]), each with a bounded `reason()` label for the
//! rejection counters.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::produce::ProduceError;

/// Start-up errors: the service refuses to run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag or combination of flags is unusable; the message says what to fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The sites file cannot be read or is invalid.
    #[error("sites file {path}: {reason}")]
    Sites {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Kafka client cannot be created.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The Avro codec cannot be built (a bug caught by tests).
    #[error("schema: {0}")]
    Schema(#[from] lumen_schemas::Error),
    /// A metric cannot be registered (a bug caught by tests).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listener cannot be bound or served.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a single event of a request was rejected while the others may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a JSON object, or a field has the wrong JSON type.
    #[error("not an event object, or a field has the wrong type")]
    InvalidEvent,
    /// `site_id` is missing.
    #[error("site_id is required")]
    MissingSiteId,
    /// `site_id` is not a site of the sites file.
    #[error("unknown site_id")]
    UnknownSite,
    /// `kind` is missing.
    #[error("kind is required")]
    MissingKind,
    /// `kind` is neither `pageview` nor `share`.
    #[error("kind must be pageview or share")]
    UnknownKind,
    /// `url` is missing.
    #[error("url is required")]
    MissingUrl,
    /// `url` is not an absolute http(s) URL.
    #[error("url must be an absolute http or https URL")]
    InvalidUrl,
    /// `url` is longer than the limit.
    #[error("url is too long")]
    UrlTooLong,
    /// The URL's host is not one of the site's hostnames.
    #[error("the url's host is not a hostname of this site")]
    HostNotAllowed,
    /// `referrer` is longer than the limit.
    #[error("referrer is too long")]
    ReferrerTooLong,
    /// `event_id` is not a UUID.
    #[error("event_id must be a UUID")]
    InvalidEventId,
    /// `sent_at` is negative.
    #[error("sent_at must be Unix milliseconds")]
    InvalidSentAt,
    /// A token is not 1 to 16 URL-safe characters.
    #[error("tokens are 1 to 16 characters of A-Z a-z 0-9 - _")]
    InvalidToken,
    /// A share without `share_token`.
    #[error("share events need share_token")]
    MissingShareToken,
    /// A share without `share_method`.
    #[error("share events need share_method")]
    MissingShareMethod,
    /// `share_method` is not `copy`, `button` or `native`.
    #[error("share_method must be copy, button or native")]
    InvalidShareMethod,
    /// `webview` or `share_target` is not a short lowercase label.
    #[error("webview and share_target are labels of up to 32 characters a-z 0-9 . _ -")]
    InvalidLabel,
    /// A field contains a control character (NUL, newline, ...).
    #[error("fields must not contain control characters")]
    ControlCharacter,
}

impl Rejection {
    /// A bounded label for metrics and the per-event result.
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidEvent => "invalid_event",
            Self::MissingSiteId => "missing_site_id",
            Self::UnknownSite => "unknown_site",
            Self::MissingKind => "missing_kind",
            Self::UnknownKind => "unknown_kind",
            Self::MissingUrl => "missing_url",
            Self::InvalidUrl => "invalid_url",
            Self::UrlTooLong => "url_too_long",
            Self::HostNotAllowed => "host_not_allowed",
            Self::ReferrerTooLong => "referrer_too_long",
            Self::InvalidEventId => "invalid_event_id",
            Self::InvalidSentAt => "invalid_sent_at",
            Self::InvalidToken => "invalid_token",
            Self::MissingShareToken => "missing_share_token",
            Self::MissingShareMethod => "missing_share_method",
            Self::InvalidShareMethod => "invalid_share_method",
            Self::InvalidLabel => "invalid_label",
            Self::ControlCharacter => "control_character",
        }
    }
}

/// One rejected event in a response: its position in the request and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventError {
    /// Position in the request's array (0 for a single object).
    pub index: usize,
    /// [`Rejection::reason`].
    pub reason: &'static str,
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Content type other than JSON or text/plain.
    #[error("Content-Type must be application/json or text/plain")]
    UnsupportedMediaType,
    /// Content encoding other than gzip or identity.
    #[error("Content-Encoding must be gzip or absent")]
    UnsupportedEncoding,
    /// Body larger than `--max-body-bytes`.
    #[error("request body is too large")]
    BodyTooLarge,
    /// Body larger than `--max-decompressed-bytes` once decompressed.
    #[error("decompressed request body is too large")]
    DecompressedTooLarge,
    /// More events than `--max-batch-events`.
    #[error("too many events in one request")]
    TooManyEvents,
    /// The body did not arrive within `--body-timeout-ms`.
    #[error("request body took too long to arrive")]
    BodyTimeout,
    /// The connection failed while the body was read.
    #[error("request body could not be read")]
    BodyRead,
    /// `Content-Encoding: gzip` with a body that is not gzip.
    #[error("body is not valid gzip")]
    BadGzip,
    /// Not JSON (syntax, encoding, nesting).
    #[error("body is not valid JSON")]
    MalformedJson,
    /// JSON but neither an object nor an array.
    #[error("body must be an event object or an array of events")]
    NotObjectOrArray,
    /// An empty array.
    #[error("no events in the request")]
    EmptyBatch,
    /// A pixel query string that cannot be read as event fields.
    #[error("query string does not hold event fields")]
    InvalidQuery,
    /// An event names a site the sites file does not know.
    #[error("unknown site")]
    UnknownSite,
    /// The request's `Origin` is not allowed for the site.
    #[error("origin not allowed for this site")]
    OriginNotAllowed,
    /// Every event was rejected.
    #[error("every event was rejected")]
    AllRejected(Vec<EventError>),
    /// Kafka could not take or confirm the events; retry later.
    #[error("events could not be stored, retry later")]
    Unavailable {
        /// What Kafka said.
        source: ProduceError,
        /// Seconds for `Retry-After`.
        retry_after_seconds: u64,
    },
    /// The tracker script file was missing at start-up.
    #[error("tracker script not available on this server")]
    TrackerMissing,
    /// No such route.
    #[error("not found")]
    NotFound,
    /// The route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A bug: a validated event could not be encoded.
    #[error("internal error")]
    Internal,
}

impl RequestError {
    /// A bounded label for metrics and the response's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::BodyTooLarge => "body_too_large",
            Self::DecompressedTooLarge => "decompressed_too_large",
            Self::TooManyEvents => "too_many_events",
            Self::BodyTimeout => "body_timeout",
            Self::BodyRead => "body_read",
            Self::BadGzip => "bad_gzip",
            Self::MalformedJson => "malformed_json",
            Self::NotObjectOrArray => "not_object_or_array",
            Self::EmptyBatch => "empty_batch",
            Self::InvalidQuery => "invalid_query",
            Self::UnknownSite => "unknown_site",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::AllRejected(_) => "all_rejected",
            Self::Unavailable { .. } => "kafka_unavailable",
            Self::TrackerMissing => "tracker_missing",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status: 4xx for anything the client sent, 503 when Kafka
    /// cannot take events, 500 only for bugs.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType | Self::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::BodyTooLarge | Self::DecompressedTooLarge | Self::TooManyEvents => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead
            | Self::BadGzip
            | Self::MalformedJson
            | Self::NotObjectOrArray
            | Self::EmptyBatch
            | Self::InvalidQuery
            | Self::AllRejected(_) => StatusCode::BAD_REQUEST,
            Self::UnknownSite | Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TrackerMissing | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [EventError]>,
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.to_string(),
            reason: self.reason(),
            errors: match &self {
                Self::AllRejected(errors) => Some(errors),
                _ => None,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Self::Unavailable {
            retry_after_seconds,
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(RequestError::UnsupportedMediaType, 415)]
    #[case(RequestError::BodyTooLarge, 413)]
    #[case(RequestError::DecompressedTooLarge, 413)]
    #[case(RequestError::TooManyEvents, 413)]
    #[case(RequestError::BodyTimeout, 408)]
    #[case(RequestError::MalformedJson, 400)]
    #[case(RequestError::AllRejected(Vec::new()), 400)]
    #[case(RequestError::OriginNotAllowed, 403)]
    #[case(RequestError::UnknownSite, 403)]
    #[case(RequestError::TrackerMissing, 404)]
    #[case(RequestError::MethodNotAllowed, 405)]
    fn client_errors_are_4xx(#[case] error: RequestError, #[case] status: u16) {
        assert_eq!(error.status().as_u16(), status);
        assert!(error.status().is_client_error());
    }

    #[test]
    fn unavailable_is_503_with_retry_after() {
        let error = RequestError::Unavailable {
            source: ProduceError::Enqueue(KafkaError::MessageProduction(
                RDKafkaErrorCode::QueueFull,
            )),
            retry_after_seconds: 7,
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
