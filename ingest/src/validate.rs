//! From a wire event to a [`RawEvent`]: required fields per kind, shapes and
//! sizes, the `?ls=` landing token, and the server-side fields (`event_id`
//! when the client sent none, `received_at`, `user_agent`, `visitor_id`).
//!
//! Shapes only: whether a token is genuine is enrich's call (see
//! `schemas/share-token.md`). Fields that do not belong to the event's kind
//! (a `share_token` on a pageview) are dropped, not rejected, so a tracker
//! bug cannot lose pageviews.

use std::net::IpAddr;

use lumen_schemas::{EventKind, RawEvent, ShareMethod};
use url::{Position, Url, form_urlencoded};
use uuid::Uuid;

use crate::decode::WireEvent;
use crate::error::Rejection;
use crate::privacy::VisitorHasher;
use crate::sites::Sites;

/// Longest token: see `schemas/share-token.md`.
pub const MAX_TOKEN_CHARS: usize = 16;
/// Longest `webview` or `share_target` label.
pub const MAX_LABEL_CHARS: usize = 32;
/// Longest site id.
pub const MAX_SITE_ID_CHARS: usize = 64;
/// The URL query parameter that carries a landing token.
pub const TOKEN_PARAMETER: &str = "ls";

/// `share_method` values a tracker may send (`address_bar` is enrich's).
const SHARE_METHODS: &[(&str, ShareMethod)] = &[
    ("copy", ShareMethod::Copy),
    ("button", ShareMethod::Button),
    ("native", ShareMethod::Native),
];

/// What the request, rather than the event, says.
#[derive(Debug)]
pub struct RequestContext<'a> {
    /// The allow-list.
    pub sites: &'a Sites,
    /// Visitor hashing.
    pub hasher: &'a VisitorHasher,
    /// The client IP, only hashed.
    pub client_ip: IpAddr,
    /// `User-Agent`, already truncated to the limit.
    pub user_agent: &'a str,
    /// `Referer`, the referrer when the event has no `referrer` field.
    pub header_referrer: Option<&'a str>,
    /// Server clock, Unix milliseconds.
    pub received_at: i64,
    /// `--max-url-bytes`.
    pub max_url_bytes: usize,
}

/// Checks one event and completes it with the server-side fields.
pub fn validate(wire: WireEvent, ctx: &RequestContext<'_>) -> Result<RawEvent, Rejection> {
    if wire_strings(&wire).any(has_control) {
        return Err(Rejection::ControlCharacter);
    }
    let site_id = wire.site_id.ok_or(Rejection::MissingSiteId)?;
    let site = ctx.sites.get(&site_id).ok_or(Rejection::UnknownSite)?;
    let kind = match wire.kind.as_deref().ok_or(Rejection::MissingKind)? {
        "pageview" => EventKind::Pageview,
        "share" => EventKind::Share,
        _ => return Err(Rejection::UnknownKind),
    };
    let mut url = wire.url.ok_or(Rejection::MissingUrl)?;
    if url.len() > ctx.max_url_bytes {
        return Err(Rejection::UrlTooLong);
    }
    let parsed = Url::parse(&url).map_err(|_| Rejection::InvalidUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Rejection::InvalidUrl);
    }
    let host = parsed.host_str().ok_or(Rejection::InvalidUrl)?;
    if !site.allows_host(host) {
        return Err(Rejection::HostNotAllowed);
    }
    let referrer = match wire.referrer {
        Some(sent) => sent,
        None => ctx.header_referrer.map(str::to_owned),
    }
    .filter(|referrer| !referrer.is_empty());
    if referrer
        .as_ref()
        .is_some_and(|r| r.len() > ctx.max_url_bytes)
    {
        return Err(Rejection::ReferrerTooLong);
    }
    let event_id = match wire.event_id {
        Some(id) => Uuid::parse_str(&id).map_err(|_| Rejection::InvalidEventId)?,
        None => Uuid::now_v7(),
    };
    if wire.sent_at.is_some_and(|at| at < 0) {
        return Err(Rejection::InvalidSentAt);
    }

    let mut event = RawEvent {
        // Written by uuid's own encoder into a stack buffer, without the
        // `fmt` machinery of `to_string()`.
        event_id: event_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .to_owned(),
        visitor_id: ctx
            .hasher
            .visitor_id(&site_id, ctx.client_ip, ctx.user_agent, ctx.received_at),
        site_id,
        kind,
        received_at: ctx.received_at,
        sent_at: wire.sent_at,
        url: String::new(),
        referrer,
        user_agent: ctx.user_agent.to_owned(),
        minted_token: None,
        landing_token: None,
        webview: None,
        share_token: None,
        share_method: None,
        share_target: None,
        parent_token: None,
    };
    match kind {
        EventKind::Pageview => {
            event.minted_token = token(wire.minted_token)?;
            event.landing_token = token(wire.landing_token)?;
            event.webview = label(wire.webview)?;
            if event.landing_token.is_none()
                && let Some((without, landing)) = take_landing_token(&parsed)
            {
                event.landing_token = token(Some(landing))?;
                url = without;
            }
        }
        EventKind::Share => {
            event.share_token = Some(token(wire.share_token)?.ok_or(Rejection::MissingShareToken)?);
            let method = wire.share_method.ok_or(Rejection::MissingShareMethod)?;
            event.share_method = Some(
                SHARE_METHODS
                    .iter()
                    .find(|(name, _)| *name == method)
                    .map(|(_, method)| *method)
                    .ok_or(Rejection::InvalidShareMethod)?,
            );
            event.share_target = label(wire.share_target)?;
            event.parent_token = token(wire.parent_token)?;
        }
    }
    event.url = url;
    Ok(event)
}

/// Every string field of a wire event.
fn wire_strings(wire: &WireEvent) -> impl Iterator<Item = &str> {
    [
        &wire.event_id,
        &wire.site_id,
        &wire.kind,
        &wire.url,
        &wire.minted_token,
        &wire.landing_token,
        &wire.webview,
        &wire.share_token,
        &wire.share_method,
        &wire.share_target,
        &wire.parent_token,
    ]
    .into_iter()
    .map(Option::as_ref)
    .chain([wire.referrer.as_ref().and_then(Option::as_ref)])
    .flatten()
    .map(String::as_str)
}

/// An optional token: empty means absent; else 1 to 16 base64url characters.
fn token(raw: Option<String>) -> Result<Option<String>, Rejection> {
    match raw {
        Some(token) if token.is_empty() => Ok(None),
        Some(token)
            if token.len() <= MAX_TOKEN_CHARS
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(Some(token))
        }
        Some(_) => Err(Rejection::InvalidToken),
        None => Ok(None),
    }
}

/// An optional short lowercase label (`telegram`, `whatsapp`, `x`).
fn label(raw: Option<String>) -> Result<Option<String>, Rejection> {
    match raw {
        Some(label) if label.is_empty() => Ok(None),
        Some(label)
            if label.len() <= MAX_LABEL_CHARS
                && label.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                }) =>
        {
            Ok(Some(label))
        }
        Some(_) => Err(Rejection::InvalidLabel),
        None => Ok(None),
    }
}

/// Whether `text` holds a control character (`char::is_control`: U+0000 to
/// U+001F and U+007F to U+009F), read as bytes instead of decoded chars:
/// C0 and DEL are single bytes, C1 is `C2 80` to `C2 9F` in UTF-8.
fn has_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(at, &byte)| {
        byte < 0x20
            || byte == 0x7F
            || (byte == 0xC2 && bytes.get(at + 1).is_some_and(|&next| next < 0xA0))
    })
}

/// The URL without its `ls` query parameters, and the first `ls` value.
/// The other parameters are re-encoded as `Url::query_pairs_mut` would,
/// written straight into the new URL instead of into a cloned `Url`.
fn take_landing_token(url: &Url) -> Option<(String, String)> {
    let query = url.query()?;
    // Most URLs carry no token: skip decoding their query (a name can only
    // spell `ls` in escapes).
    if !query.contains(TOKEN_PARAMETER) && !query.contains('%') {
        return None;
    }
    let pairs = form_urlencoded::parse(query.as_bytes());
    let landing = pairs
        .clone()
        .find(|(name, _)| name == TOKEN_PARAMETER)?
        .1
        .into_owned();
    let mut rest = pairs.filter(|(name, _)| name != TOKEN_PARAMETER).peekable();
    let mut without = url[..Position::AfterPath].to_owned();
    if rest.peek().is_some() {
        without.push('?');
        let start = without.len();
        without = form_urlencoded::Serializer::for_suffix(without, start)
            .extend_pairs(rest)
            .finish();
    }
    without.push_str(&url[Position::AfterQuery..]);
    Some((without, landing))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    const NOW: i64 = 1_764_417_600_000;

    fn sites() -> Sites {
        Sites::parse(include_str!("../sites.example.json")).expect("sites")
    }

    fn check(wire: WireEvent) -> Result<RawEvent, Rejection> {
        let sites = sites();
        let hasher = VisitorHasher::new("0123456789abcdef");
        let ctx = RequestContext {
            sites: &sites,
            hasher: &hasher,
            client_ip: "203.0.113.7".parse().expect("ip"),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64)",
            header_referrer: Some("https://header.example/"),
            received_at: NOW,
            max_url_bytes: 4096,
        };
        validate(wire, &ctx)
    }

    fn pageview() -> WireEvent {
        WireEvent {
            site_id: Some("demo".into()),
            kind: Some("pageview".into()),
            url: Some("http://localhost:8080/articles/eclipse?utm_source=x".into()),
            minted_token: Some("AcB3bAEjRWeJq83Q".into()),
            ..WireEvent::default()
        }
    }

    fn share() -> WireEvent {
        WireEvent {
            kind: Some("share".into()),
            share_token: Some("AcB3bAEjRWeJq83Q".into()),
            share_method: Some("button".into()),
            share_target: Some("whatsapp".into()),
            parent_token: Some("AcB3bAEjRWeJq83R".into()),
            ..pageview()
        }
    }

    #[test]
    fn a_pageview_is_completed_by_the_server() {
        let event = check(pageview()).expect("valid");
        assert_eq!(event.kind, EventKind::Pageview);
        assert_eq!(event.received_at, NOW);
        assert_eq!(
            event.url,
            "http://localhost:8080/articles/eclipse?utm_source=x"
        );
        assert_eq!(event.referrer.as_deref(), Some("https://header.example/"));
        assert_eq!(event.user_agent, "Mozilla/5.0 (X11; Linux x86_64)");
        assert_eq!(event.visitor_id.len(), 32);
        let id = Uuid::parse_str(&event.event_id).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(event.minted_token.as_deref(), Some("AcB3bAEjRWeJq83Q"));
        assert_eq!(event.partition_key(), event.visitor_id);
    }

    #[test]
    fn a_share_keeps_share_fields_and_is_keyed_by_its_token() {
        let event = check(share()).expect("valid");
        assert_eq!(event.share_method, Some(ShareMethod::Button));
        assert_eq!(event.share_target.as_deref(), Some("whatsapp"));
        assert_eq!(event.parent_token.as_deref(), Some("AcB3bAEjRWeJq83R"));
        assert_eq!(event.minted_token, None, "pageview fields are dropped");
        assert_eq!(event.partition_key(), "AcB3bAEjRWeJq83Q");
    }

    #[test]
    fn the_client_event_id_is_kept_normalised() {
        let wire = WireEvent {
            event_id: Some("0192F0C1-7A2B-7CDE-8F00-112233445566".into()),
            ..pageview()
        };
        assert_eq!(
            check(wire).expect("valid").event_id,
            "0192f0c1-7a2b-7cde-8f00-112233445566"
        );
    }

    #[rstest]
    #[case::absent_takes_the_header(None, Some("https://header.example/"))]
    #[case::null_means_none(Some(None), None)]
    #[case::empty_means_none(Some(Some(String::new())), None)]
    #[case::sent_wins(Some(Some("https://t.co/x".into())), Some("https://t.co/x"))]
    fn referrer_sources(#[case] sent: Option<Option<String>>, #[case] expected: Option<&str>) {
        let wire = WireEvent {
            referrer: sent,
            ..pageview()
        };
        assert_eq!(check(wire).expect("valid").referrer.as_deref(), expected);
    }

    #[rstest]
    #[case::query_only(
        "http://localhost/a?ls=AcB3bAEjRWeJq83Q",
        None,
        "http://localhost/a",
        Some("AcB3bAEjRWeJq83Q")
    )]
    #[case::other_parameters_kept(
        "http://localhost/a?x=1&ls=AcB3bAEjRWeJq83Q&y=2#top",
        None,
        "http://localhost/a?x=1&y=2#top",
        Some("AcB3bAEjRWeJq83Q")
    )]
    #[case::sent_landing_token_keeps_the_url(
        "http://localhost/a?ls=AAAA",
        Some("AcB3bAEjRWeJq83Q"),
        "http://localhost/a?ls=AAAA",
        Some("AcB3bAEjRWeJq83Q")
    )]
    #[case::escaped_name_and_others_re_encoded(
        "http://localhost/a?%6Cs=AcB3bAEjRWeJq83Q&q=a+b%20c&&ls=x#f",
        None,
        "http://localhost/a?q=a+b+c#f",
        Some("AcB3bAEjRWeJq83Q")
    )]
    #[case::no_token("http://localhost/a?x=1", None, "http://localhost/a?x=1", None)]
    #[case::ls_elsewhere_only(
        "http://localhost/ls?also=ls",
        None,
        "http://localhost/ls?also=ls",
        None
    )]
    fn landing_token_from_the_url(
        #[case] url: &str,
        #[case] landing: Option<&str>,
        #[case] stored_url: &str,
        #[case] stored_landing: Option<&str>,
    ) {
        let wire = WireEvent {
            url: Some(url.into()),
            landing_token: landing.map(str::to_owned),
            ..pageview()
        };
        let event = check(wire).expect("valid");
        assert_eq!(event.url, stored_url);
        assert_eq!(event.landing_token.as_deref(), stored_landing);
        if stored_landing.is_some() {
            assert_eq!(event.partition_key(), stored_landing.expect("token"));
        }
    }

    #[rstest]
    #[case::no_site(|w: &mut WireEvent| w.site_id = None, Rejection::MissingSiteId)]
    #[case::unknown_site(|w: &mut WireEvent| w.site_id = Some("nope".into()), Rejection::UnknownSite)]
    #[case::no_kind(|w: &mut WireEvent| w.kind = None, Rejection::MissingKind)]
    #[case::bad_kind(|w: &mut WireEvent| w.kind = Some("click".into()), Rejection::UnknownKind)]
    #[case::no_url(|w: &mut WireEvent| w.url = None, Rejection::MissingUrl)]
    #[case::relative_url(|w: &mut WireEvent| w.url = Some("/a".into()), Rejection::InvalidUrl)]
    #[case::ftp_url(|w: &mut WireEvent| w.url = Some("ftp://localhost/a".into()), Rejection::InvalidUrl)]
    #[case::javascript_url(|w: &mut WireEvent| w.url = Some("javascript:alert(1)".into()), Rejection::InvalidUrl)]
    #[case::long_url(|w: &mut WireEvent| w.url = Some(format!("http://localhost/{}", "a".repeat(4096))), Rejection::UrlTooLong)]
    #[case::foreign_host(|w: &mut WireEvent| w.url = Some("https://evil.example/".into()), Rejection::HostNotAllowed)]
    #[case::long_referrer(|w: &mut WireEvent| w.referrer = Some(Some("r".repeat(4097))), Rejection::ReferrerTooLong)]
    #[case::bad_event_id(|w: &mut WireEvent| w.event_id = Some("42".into()), Rejection::InvalidEventId)]
    #[case::negative_sent_at(|w: &mut WireEvent| w.sent_at = Some(-1), Rejection::InvalidSentAt)]
    #[case::long_token(|w: &mut WireEvent| w.minted_token = Some("A".repeat(17)), Rejection::InvalidToken)]
    #[case::token_alphabet(|w: &mut WireEvent| w.minted_token = Some("AcB3bAEjRWeJq8+Q".into()), Rejection::InvalidToken)]
    #[case::url_token_alphabet(|w: &mut WireEvent| w.url = Some("http://localhost/?ls=a%2Bb".into()), Rejection::InvalidToken)]
    #[case::webview_label(|w: &mut WireEvent| w.webview = Some("Tele gram".into()), Rejection::InvalidLabel)]
    #[case::nul_byte(|w: &mut WireEvent| w.site_id = Some("de\0mo".into()), Rejection::ControlCharacter)]
    #[case::newline_in_referrer(|w: &mut WireEvent| w.referrer = Some(Some("a\nb".into())), Rejection::ControlCharacter)]
    fn pageview_rejections(#[case] break_it: fn(&mut WireEvent), #[case] expected: Rejection) {
        let mut wire = pageview();
        break_it(&mut wire);
        assert_eq!(check(wire).expect_err("rejected"), expected);
    }

    #[rstest]
    #[case::no_token(|w: &mut WireEvent| w.share_token = None, Rejection::MissingShareToken)]
    #[case::empty_token(|w: &mut WireEvent| w.share_token = Some(String::new()), Rejection::MissingShareToken)]
    #[case::no_method(|w: &mut WireEvent| w.share_method = None, Rejection::MissingShareMethod)]
    #[case::address_bar(|w: &mut WireEvent| w.share_method = Some("address_bar".into()), Rejection::InvalidShareMethod)]
    #[case::bad_target(|w: &mut WireEvent| w.share_target = Some("<script>".into()), Rejection::InvalidLabel)]
    #[case::bad_parent(|w: &mut WireEvent| w.parent_token = Some("no spaces".into()), Rejection::InvalidToken)]
    fn share_rejections(#[case] break_it: fn(&mut WireEvent), #[case] expected: Rejection) {
        let mut wire = share();
        break_it(&mut wire);
        assert_eq!(check(wire).expect_err("rejected"), expected);
    }

    proptest! {
        #[test]
        fn control_characters_are_found_as_chars_would(text in "\\PC{0,8}[\\x00-\\x{a0}]?\\PC{0,8}") {
            prop_assert_eq!(has_control(&text), text.chars().any(char::is_control));
        }
    }
}
