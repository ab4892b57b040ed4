//! Serving the tracker script at `/t.js`: read once at start-up, answered
//! with a content hash as `ETag` and a long cache lifetime, and `304` when
//! the browser's `If-None-Match` already has it. The script itself is built
//! in `tracker/`; this module only serves the file.

use std::hash::Hasher;
use std::path::Path;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::error::RequestError;

/// Browsers and CDNs keep the script a day and revalidate with the ETag.
pub const CACHE_CONTROL: &str = "public, max-age=86400, stale-while-revalidate=604800";

/// The loaded script, or nothing when the file was missing.
#[derive(Debug, Clone)]
pub struct TrackerScript {
    loaded: Option<(Bytes, HeaderValue)>,
}

impl TrackerScript {
    /// Reads `path`; a missing or unreadable file is logged, and `/t.js`
    /// answers 404 until a restart with the file present.
    pub fn load(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(script) => {
                tracing::info!(path = %path.display(), bytes = script.len(), "tracker script loaded");
                Self::from_bytes(script)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "tracker script not found: /t.js answers 404");
                Self { loaded: None }
            }
        }
    }

    /// A script from memory.
    pub fn from_bytes(script: impl Into<Bytes>) -> Self {
        let script = script.into();
        let mut hasher = SipHasher13::new();
        hasher.write(&script);
        let etag = format!("\"{:032x}\"", hasher.finish128().as_u128());
        let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
        Self {
            loaded: Some((script, etag)),
        }
    }

    /// The answer to `GET /t.js`.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let Some((script, etag)) = &self.loaded else {
            return RequestError::TrackerMissing.into_response();
        };
        let cache_headers = [
            (header::ETAG, etag.clone()),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            ),
        ];
        if matches_etag(request, etag) {
            return (StatusCode::NOT_MODIFIED, cache_headers).into_response();
        }
        (
            StatusCode::OK,
            cache_headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            )],
            script.clone(),
        )
            .into_response()
    }
}

/// `If-None-Match` (weak comparison, lists, `*`) against our ETag.
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn script() -> TrackerScript {
        TrackerScript::from_bytes(&b"console.log('lumen')"[..])
    }

    fn etag() -> String {
        script().respond(&HeaderMap::new()).headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_owned()
    }

    #[test]
    fn serves_the_script_with_cache_headers() {
        let response = script().respond(&HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
        assert!(etag().starts_with('"') && etag().ends_with('"'));
        assert_ne!(
            etag(),
            TrackerScript::from_bytes(&b"other"[..])
                .respond(&HeaderMap::new())
                .headers()[header::ETAG]
        );
    }

    #[rstest]
    #[case::exact(None, true)]
    #[case::weak(Some("W/{}"), true)]
    #[case::in_a_list(Some("\"abc\", {}"), true)]
    #[case::star(Some("*"), true)]
    #[case::other(Some("\"abc\""), false)]
    fn conditional_requests(#[case] template: Option<&str>, #[case] not_modified: bool) {
        let value = template.map_or(etag(), |t| t.replace("{}", &etag()));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&value).expect("header"),
        );
        let status = script().respond(&headers).status();
        assert_eq!(status == StatusCode::NOT_MODIFIED, not_modified, "{value}");
    }

    #[test]
    fn a_missing_file_is_a_404_with_a_reason() {
        let missing = TrackerScript::load(Path::new("/nonexistent/t.js"));
        assert_eq!(
            missing.respond(&HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
