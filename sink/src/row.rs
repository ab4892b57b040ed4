//! The ClickHouse row of `events`: an [`EnrichedEvent`] borrowed field by
//! field, with the model's conventions applied: absent strings become `''`,
//! enums become their `Enum8` codes, times stay Unix milliseconds
//! (`DateTime64(3)`). The column set and codes are those of
//! `schemas/migrations/0001_events.sql`; the integration test
//! `the_row_type_matches_the_events_table` checks them against the migrated
//! table. The sink itself writes rows straight from the Avro bytes
//! (`transcode.rs`), with the same codes and column list; this row is their
//! reference (`transcoded_rows_read_back_as_the_rows_of_their_events`).

use clickhouse::Row;
use lumen_schemas::{
    Attribution, Channel, Confidence, DeviceType, EnrichedEvent, EventKind, ShareMethod,
    TokenStatus,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The table the rows go to.
pub const EVENTS_TABLE: &str = "events";

/// A decoded Kafka record, ready to become a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The event.
    pub event: EnrichedEvent,
    /// `event.event_id`, parsed (a record whose id does not parse is a dead
    /// letter and never becomes a `Record`).
    pub event_id: Uuid,
}

impl Record {
    /// Checks what the row needs and the Avro schema cannot express.
    pub fn new(event: EnrichedEvent) -> Result<Self, uuid::Error> {
        let event_id = Uuid::parse_str(&event.event_id)?;
        Ok(Self { event, event_id })
    }

    /// The row, borrowing from the record.
    pub fn row(&self) -> EventRow<'_> {
        let e = &self.event;
        EventRow {
            event_id: self.event_id,
            site_id: &e.site_id,
            kind: kind_code(e.kind),
            received_at: e.received_at,
            sent_at: e.sent_at,
            url: &e.url,
            referrer: text(&e.referrer),
            user_agent: &e.user_agent,
            visitor_id: &e.visitor_id,
            minted_token: text(&e.minted_token),
            landing_token: text(&e.landing_token),
            webview: text(&e.webview),
            share_token: text(&e.share_token),
            share_method: e.share_method.map(share_method_code),
            share_target: text(&e.share_target),
            parent_token: text(&e.parent_token),
            channel: channel_code(e.channel),
            channel_source: text(&e.channel_source),
            attribution: attribution_code(e.attribution),
            confidence: confidence_code(e.confidence),
            rule: &e.rule,
            browser_family: &e.browser_family,
            browser_major: text(&e.browser_major),
            os_family: &e.os_family,
            device_type: device_type_code(e.device_type),
            in_app: text(&e.in_app),
            is_bot: e.is_bot,
            bot_name: text(&e.bot_name),
            preview_app: text(&e.preview_app),
            utm_source: text(&e.utm_source),
            utm_medium: text(&e.utm_medium),
            utm_campaign: text(&e.utm_campaign),
            token_status: token_status_code(e.token_status),
            share_age_seconds: e.share_age_seconds,
            landing_share_method: e.landing_share_method.map(share_method_code),
            landing_share_target: text(&e.landing_share_target),
            landing_sharer_visitor_id: text(&e.landing_sharer_visitor_id),
            landing_parent_token: text(&e.landing_parent_token),
        }
    }
}

/// One row of `events`. Field names are column names.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
#[allow(missing_docs)] // The columns are documented in 0001_events.sql.
pub struct EventRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub site_id: &'a str,
    pub kind: i8,
    pub received_at: i64,
    pub sent_at: Option<i64>,
    pub url: &'a str,
    pub referrer: &'a str,
    pub user_agent: &'a str,
    pub visitor_id: &'a str,
    pub minted_token: &'a str,
    pub landing_token: &'a str,
    pub webview: &'a str,
    pub share_token: &'a str,
    pub share_method: Option<i8>,
    pub share_target: &'a str,
    pub parent_token: &'a str,
    pub channel: i8,
    pub channel_source: &'a str,
    pub attribution: i8,
    pub confidence: i8,
    pub rule: &'a str,
    pub browser_family: &'a str,
    pub browser_major: &'a str,
    pub os_family: &'a str,
    pub device_type: i8,
    pub in_app: &'a str,
    pub is_bot: bool,
    pub bot_name: &'a str,
    pub preview_app: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub token_status: i8,
    pub share_age_seconds: Option<i64>,
    pub landing_share_method: Option<i8>,
    pub landing_share_target: &'a str,
    pub landing_sharer_visitor_id: &'a str,
    pub landing_parent_token: &'a str,
}

/// The model stores an absent string as `''` (see 0001_events.sql).
fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

// The Enum8 codes of 0001_events.sql, also the transcoder's (by symbol).
// Exhaustive matches: a new variant in the schemas crate does not compile
// until it has a code here and a symbol in a migration.

pub(crate) fn kind_code(kind: EventKind) -> i8 {
    match kind {
        EventKind::Pageview => 1,
        EventKind::Share => 2,
    }
}

pub(crate) fn share_method_code(method: ShareMethod) -> i8 {
    match method {
        ShareMethod::Copy => 1,
        ShareMethod::Button => 2,
        ShareMethod::Native => 3,
        ShareMethod::AddressBar => 4,
    }
}

pub(crate) fn channel_code(channel: Channel) -> i8 {
    match channel {
        Channel::DarkSocial => 1,
        Channel::Social => 2,
        Channel::Search => 3,
        Channel::Ai => 4,
        Channel::Email => 5,
        Channel::Paid => 6,
        Channel::Referral => 7,
        Channel::Internal => 8,
        Channel::Direct => 9,
    }
}

pub(crate) fn attribution_code(attribution: Attribution) -> i8 {
    match attribution {
        Attribution::Token => 1,
        Attribution::InApp => 2,
        Attribution::Referrer => 3,
        Attribution::Campaign => 4,
        Attribution::Heuristic => 5,
        Attribution::None => 6,
    }
}

pub(crate) fn confidence_code(confidence: Confidence) -> i8 {
    match confidence {
        Confidence::Certain => 1,
        Confidence::Probable => 2,
    }
}

pub(crate) fn device_type_code(device: DeviceType) -> i8 {
    match device {
        DeviceType::Desktop => 1,
        DeviceType::Mobile => 2,
        DeviceType::Tablet => 3,
        DeviceType::Bot => 4,
        DeviceType::Other => 5,
    }
}

pub(crate) fn token_status_code(status: TokenStatus) -> i8 {
    match status {
        TokenStatus::Absent => 1,
        TokenStatus::Explicit => 2,
        TokenStatus::AddressBar => 3,
        TokenStatus::Invalid => 4,
    }
}

/// Events for tests and the benchmark: realistic, varied, deterministic.
pub mod sample {
    use super::*;

    const SITES: &[&str] = &["daily-planet", "gotham-gazette", "central-city-citizen"];
    const CHANNELS: &[(Channel, &str, Attribution)] = &[
        (Channel::DarkSocial, "whatsapp", Attribution::InApp),
        (Channel::DarkSocial, "", Attribution::Token),
        (Channel::Social, "facebook", Attribution::Referrer),
        (Channel::Search, "google", Attribution::Referrer),
        (Channel::Direct, "", Attribution::None),
        (Channel::Ai, "chatgpt", Attribution::Referrer),
    ];

    /// The `n`-th sample event at `received_at` (Unix ms): pageviews mostly,
    /// every 7th a share, every 11th a link-preview fetch, tokens that chain.
    pub fn event(n: u64, received_at: i64) -> EnrichedEvent {
        let site = SITES[(n % SITES.len() as u64) as usize];
        let (channel, source, attribution) = CHANNELS[(n % CHANNELS.len() as u64) as usize];
        let share = n % 7 == 3;
        let preview = n % 11 == 5;
        let token = |i: u64| format!("tok{i:013}");
        EnrichedEvent {
            event_id: Uuid::from_u64_pair(0x0192_f0c1_7a2b_7cde, n).to_string(),
            site_id: site.to_owned(),
            kind: if share {
                EventKind::Share
            } else {
                EventKind::Pageview
            },
            received_at,
            sent_at: n.is_multiple_of(2).then_some(received_at - 40),
            url: format!("https://{site}.example/news/story-{}", n % 13),
            referrer: (channel == Channel::Social).then(|| "https://facebook.com/".to_owned()),
            user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)".to_owned(),
            visitor_id: format!("{:016x}", n % 97),
            minted_token: (!share).then(|| token(n)),
            landing_token: (!share && n % 5 == 1).then(|| token(n / 2)),
            webview: None,
            share_token: share.then(|| token(n - 1)),
            share_method: share.then_some(match n % 3 {
                0 => ShareMethod::Copy,
                1 => ShareMethod::Button,
                _ => ShareMethod::Native,
            }),
            share_target: (share && n % 3 == 1).then(|| "whatsapp".to_owned()),
            parent_token: None,
            channel,
            channel_source: (!source.is_empty()).then(|| source.to_owned()),
            attribution,
            confidence: Confidence::Certain,
            rule: "sample".to_owned(),
            browser_family: "Mobile Safari".to_owned(),
            browser_major: Some("18".to_owned()),
            os_family: "iOS".to_owned(),
            device_type: if preview {
                DeviceType::Bot
            } else {
                DeviceType::Mobile
            },
            in_app: (source == "whatsapp").then(|| "whatsapp".to_owned()),
            is_bot: preview,
            bot_name: preview.then(|| "WhatsApp".to_owned()),
            preview_app: preview.then(|| "whatsapp".to_owned()),
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
            token_status: if !share && n % 5 == 1 {
                TokenStatus::AddressBar
            } else {
                TokenStatus::Absent
            },
            share_age_seconds: (!share && n % 5 == 1).then_some(60),
            landing_share_method: (!share && n % 5 == 1).then_some(ShareMethod::AddressBar),
            landing_share_target: None,
            landing_sharer_visitor_id: None,
            landing_parent_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_strings_become_empty_and_enums_codes() {
        let mut event = sample::event(3, 1_764_000_000_000);
        event.referrer = None;
        event.channel = Channel::Direct;
        let record = Record::new(event).expect("valid id");
        let row = record.row();
        assert_eq!(row.referrer, "");
        assert_eq!(row.channel, 9);
        assert_eq!(row.kind, 2, "the 3rd sample is a share");
        assert_eq!(row.share_method, Some(1));
        assert_eq!(row.received_at, 1_764_000_000_000);
    }

    #[test]
    fn an_event_id_that_is_not_a_uuid_is_refused() {
        let mut event = sample::event(1, 1_764_000_000_000);
        event.event_id = "not-a-uuid".to_owned();
        assert!(Record::new(event).is_err());
    }
}
