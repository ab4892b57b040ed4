//! The Rust side of the Avro schemas in `avro/`. Field names and enum
//! symbols match the `.avsc` files exactly; the codec checks them against
//! each other in tests.

use serde::{Deserialize, Serialize};

/// Whether an event is a page view or an explicit share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A page was viewed.
    Pageview,
    /// A reader shared the page (copy, share button, Web Share API).
    Share,
}

/// How a link was shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareMethod {
    /// Text copied on the page.
    Copy,
    /// A share button of the page (`data-lumen-share`).
    Button,
    /// The Web Share API (`navigator.share`).
    Native,
    /// Never shared explicitly: the URL was copied from the address bar.
    AddressBar,
}

/// The channel taxonomy of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Private share: messaging, SMS, e-mail between people, copy/paste.
    DarkSocial,
    /// Public social network.
    Social,
    /// Search engine.
    Search,
    /// AI assistant.
    Ai,
    /// The publisher's own newsletters and campaigns.
    Email,
    /// Paid campaigns.
    Paid,
    /// Another website.
    Referral,
    /// Navigation within the site.
    Internal,
    /// Typed or bookmarked.
    Direct,
}

/// Which evidence decided the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// A share token.
    Token,
    /// An in-app browser (user agent or tracker webview flag).
    InApp,
    /// The referrer.
    Referrer,
    /// Campaign parameters (utm_*, click ids).
    Campaign,
    /// The landing page's shape (deep link without referrer).
    Heuristic,
    /// No evidence at all.
    None,
}

/// How sure the classification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Direct evidence.
    Certain,
    /// A heuristic.
    Probable,
}

/// Device class from the user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// Desktop or laptop.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Crawler, preview fetcher, headless browser.
    Bot,
    /// Anything else (TV, console, unknown).
    Other,
}

/// How a pageview's landing token resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// The URL carried no token.
    Absent,
    /// The token was explicitly shared and found in the token store.
    Explicit,
    /// A well-formed token never explicitly shared: copied from the address bar.
    AddressBar,
    /// Malformed or forged; the visit was classified without it.
    Invalid,
}

/// A tracker event as accepted by ingest (topic `lumen.raw`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// UUID, the deduplication key end to end.
    pub event_id: String,
    /// The publisher's site id.
    pub site_id: String,
    /// Pageview or share.
    pub kind: EventKind,
    /// Ingest clock, Unix milliseconds.
    pub received_at: i64,
    /// Client clock, Unix milliseconds.
    pub sent_at: Option<i64>,
    /// Page URL without the `ls` token.
    pub url: String,
    /// Referrer, when any.
    pub referrer: Option<String>,
    /// The browser's user agent.
    pub user_agent: String,
    /// Hex of a daily-salted keyed hash of site, IP and user agent.
    pub visitor_id: String,
    /// Pageviews: the token minted for this view.
    pub minted_token: Option<String>,
    /// Pageviews: the token the URL arrived with.
    pub landing_token: Option<String>,
    /// Pageviews: an app webview the user agent hides (e.g. `telegram`).
    pub webview: Option<String>,
    /// Shares: the shared token.
    pub share_token: Option<String>,
    /// Shares: how it was shared.
    pub share_method: Option<ShareMethod>,
    /// Shares: the button's network.
    pub share_target: Option<String>,
    /// Shares: the token the sharer arrived with.
    pub parent_token: Option<String>,
}

impl RawEvent {
    /// The Kafka key of DESIGN.md: the share token for shares, the landing
    /// token for pageviews that carry one, else the visitor id. An explicit
    /// share and the visits it caused land in the same partition, in order.
    pub fn partition_key(&self) -> &str {
        let token = match self.kind {
            EventKind::Share => self.share_token.as_deref(),
            EventKind::Pageview => self.landing_token.as_deref(),
        };
        token.unwrap_or(&self.visitor_id)
    }
}

/// A raw event with its channel, parsed user agent and resolved share token
/// (topic `lumen.enriched`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedEvent {
    /// See [`RawEvent::event_id`].
    pub event_id: String,
    /// See [`RawEvent::site_id`].
    pub site_id: String,
    /// See [`RawEvent::kind`].
    pub kind: EventKind,
    /// See [`RawEvent::received_at`].
    pub received_at: i64,
    /// See [`RawEvent::sent_at`].
    pub sent_at: Option<i64>,
    /// See [`RawEvent::url`].
    pub url: String,
    /// See [`RawEvent::referrer`].
    pub referrer: Option<String>,
    /// See [`RawEvent::user_agent`].
    pub user_agent: String,
    /// See [`RawEvent::visitor_id`].
    pub visitor_id: String,
    /// See [`RawEvent::minted_token`].
    pub minted_token: Option<String>,
    /// See [`RawEvent::landing_token`].
    pub landing_token: Option<String>,
    /// See [`RawEvent::webview`].
    pub webview: Option<String>,
    /// See [`RawEvent::share_token`].
    pub share_token: Option<String>,
    /// See [`RawEvent::share_method`].
    pub share_method: Option<ShareMethod>,
    /// See [`RawEvent::share_target`].
    pub share_target: Option<String>,
    /// See [`RawEvent::parent_token`].
    pub parent_token: Option<String>,
    /// The inferred channel.
    pub channel: Channel,
    /// The source within the channel (`whatsapp`, `google`, `gmail`, ...).
    pub channel_source: Option<String>,
    /// Which evidence decided.
    pub attribution: Attribution,
    /// How sure.
    pub confidence: Confidence,
    /// Id of the rule that fired.
    pub rule: String,
    /// Browser family from the user agent.
    pub browser_family: String,
    /// Browser major version.
    pub browser_major: Option<String>,
    /// Operating system family.
    pub os_family: String,
    /// Device class.
    pub device_type: DeviceType,
    /// App whose webview shows the page.
    pub in_app: Option<String>,
    /// Bots and preview fetchers are never visits.
    pub is_bot: bool,
    /// Which bot.
    pub bot_name: Option<String>,
    /// For link-preview fetchers: the app the link was pasted into.
    pub preview_app: Option<String>,
    /// Landing URL's `utm_source`.
    pub utm_source: Option<String>,
    /// Landing URL's `utm_medium`.
    pub utm_medium: Option<String>,
    /// Landing URL's `utm_campaign`.
    pub utm_campaign: Option<String>,
    /// How the landing token resolved.
    pub token_status: TokenStatus,
    /// Seconds between the token's minting and this visit.
    pub share_age_seconds: Option<i64>,
    /// The share's method; `address_bar` when never explicitly shared.
    pub landing_share_method: Option<ShareMethod>,
    /// The share button's network.
    pub landing_share_target: Option<String>,
    /// The sharer's visitor id, when explicitly shared.
    pub landing_sharer_visitor_id: Option<String>,
    /// The token the sharer had arrived with.
    pub landing_parent_token: Option<String>,
}

/// An explicit share on the compacted topic `lumen.shares`, keyed by token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// The shared token.
    pub token: String,
    /// The publisher's site id.
    pub site_id: String,
    /// The share event that recorded it.
    pub event_id: String,
    /// Ingest clock of the share event, Unix milliseconds.
    pub shared_at: i64,
    /// How it was shared.
    pub share_method: ShareMethod,
    /// The share button's network.
    pub share_target: Option<String>,
    /// The token the sharer had arrived with.
    pub parent_token: Option<String>,
    /// The sharer's visitor id.
    pub sharer_visitor_id: String,
    /// The shared page.
    pub url: String,
}
