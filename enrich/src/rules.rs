//! The channel rules of DESIGN.md as one ordered table: the first rule whose
//! conditions all hold decides `channel`, `channel_source`, `attribution`
//! and `confidence`, and its id is the enriched event's `rule`.
//!
//! Precedence is the order of the table, and each choice is tested in
//! `classify.rs`:
//! - bots and link-preview fetchers first: a preview fetch is never a visit;
//! - navigation within the site next, whatever else the URL carries;
//! - the publisher's own campaign tags (newsletter, paid) before any
//!   referrer: a newsletter read in Gmail is `email`, not dark social;
//! - a share token says the visit came from a reader's share, the rest says
//!   where: a public network's referrer or in-app browser makes it `social`,
//!   anything else keeps it `dark_social`;
//! - messaging and social in-app browsers before referrers (apps often send
//!   none), then referrers by kind, then the deep-link heuristic, then
//!   `direct`.
//!
//! The evidence itself is computed in `classify.rs`; this file is data.

use lumen_schemas::{Attribution, Channel, Confidence};

use crate::domains::SiteKind;

/// One condition on the evidence of a pageview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A link-preview fetcher of an app of this kind.
    Preview(SiteKind),
    /// Any bot.
    Bot,
    /// The referrer is the site itself.
    Internal,
    /// `utm_medium` is one of these (lowercase).
    UtmMedium(&'static [&'static str]),
    /// The URL carries a click id of this kind.
    ClickId(ClickIdKind),
    /// A well-formed share token.
    Token,
    /// An in-app browser (user agent or tracker flag) of an app of this kind.
    InApp(SiteKind),
    /// `utm_source` names a site of this kind (`utm_source=chatgpt.com`).
    UtmSourceKind(SiteKind),
    /// The URL carries a `utm_source`.
    UtmSource,
    /// The referrer is a site of this kind.
    Referrer(SiteKind),
    /// Any external referrer.
    AnyReferrer,
    /// No referrer and an article-like landing path.
    DeepLink,
}

/// Where `channel_source` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No source.
    None,
    /// This value.
    Fixed(&'static str),
    /// The referrer's table source, or its host when not in a table.
    Referrer,
    /// The in-app browser's app.
    InApp,
    /// The app a link-preview fetcher reveals.
    PreviewApp,
    /// `utm_source` as given.
    UtmSource,
    /// `utm_source` looked up in the domain table.
    UtmSourceSite,
    /// The platform of the click id.
    ClickId,
    /// The in-app browser's app when it is a known app, else the referrer.
    InAppOrReferrer,
}

/// One row of the rule table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, reported as `rule`.
    pub id: &'static str,
    /// Conditions that must all hold; empty always holds.
    pub when: &'static [When],
    /// The channel it decides.
    pub channel: Channel,
    /// Where `channel_source` comes from.
    pub source: Source,
    /// Which evidence decided.
    pub attribution: Attribution,
    /// How sure.
    pub confidence: Confidence,
}

/// `utm_medium` values of the publisher's own newsletters and e-mails.
pub const EMAIL_MEDIUMS: &[&str] = &["email", "e-mail", "e_mail", "newsletter", "mail"];
/// `utm_medium` values of paid campaigns.
pub const PAID_MEDIUMS: &[&str] = &[
    "cpc",
    "ppc",
    "cpm",
    "cpv",
    "paid",
    "paidsearch",
    "paid_search",
    "paid-search",
    "paidsocial",
    "paid_social",
    "paid-social",
    "display",
    "banner",
    "retargeting",
];
/// `utm_medium` values of organic social posts.
pub const SOCIAL_MEDIUMS: &[&str] = &[
    "social",
    "social-network",
    "social_network",
    "sm",
    "social-media",
];

/// What a click id says about the link that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickIdKind {
    /// Only ads carry it.
    Paid,
    /// An e-mail platform adds it to the links of a mailing.
    Email,
    /// Facebook adds `fbclid` to every outbound link, ads or not.
    Facebook,
}

/// URL click ids: parameter, platform, kind. When a URL carries several,
/// the first row here decides.
pub const CLICK_IDS: &[(&str, &str, ClickIdKind)] = &[
    ("gclid", "google", ClickIdKind::Paid),
    ("gbraid", "google", ClickIdKind::Paid),
    ("wbraid", "google", ClickIdKind::Paid),
    ("dclid", "google", ClickIdKind::Paid),
    ("msclkid", "microsoft", ClickIdKind::Paid),
    ("ttclid", "tiktok", ClickIdKind::Paid),
    ("twclid", "x", ClickIdKind::Paid),
    ("li_fat_id", "linkedin", ClickIdKind::Paid),
    ("yclid", "yandex", ClickIdKind::Paid),
    ("mc_cid", "mailchimp", ClickIdKind::Email),
    ("mc_eid", "mailchimp", ClickIdKind::Email),
    ("_hsenc", "hubspot", ClickIdKind::Email),
    ("_hsmi", "hubspot", ClickIdKind::Email),
    ("mkt_tok", "marketo", ClickIdKind::Email),
    ("fbclid", "facebook", ClickIdKind::Facebook),
];

const fn rule(
    id: &'static str,
    when: &'static [When],
    channel: Channel,
    source: Source,
    attribution: Attribution,
    confidence: Confidence,
) -> Rule {
    Rule {
        id,
        when,
        channel,
        source,
        attribution,
        confidence,
    }
}

use Attribution as A;
use Channel as C;
use Confidence::{Certain, Probable};
use SiteKind::{Ai, Messaging, Search, Social, Webmail};

/// The rules, in precedence order. The last one always holds. One row per
/// line, so the table reads as a table.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    rule("bot.preview_private", &[When::Preview(Messaging)], C::DarkSocial, Source::PreviewApp, A::InApp, Certain),
    rule("bot.preview_public", &[When::Preview(Social)], C::Social, Source::PreviewApp, A::InApp, Certain),
    rule("bot.other", &[When::Bot], C::Direct, Source::None, A::None, Certain),
    rule("internal", &[When::Internal], C::Internal, Source::None, A::Referrer, Certain),
    rule("campaign.email", &[When::UtmMedium(EMAIL_MEDIUMS)], C::Email, Source::UtmSource, A::Campaign, Certain),
    rule("campaign.paid", &[When::UtmMedium(PAID_MEDIUMS)], C::Paid, Source::UtmSource, A::Campaign, Certain),
    rule("campaign.click_id", &[When::ClickId(ClickIdKind::Paid)], C::Paid, Source::ClickId, A::Campaign, Certain),
    rule("campaign.email_click_id", &[When::ClickId(ClickIdKind::Email)], C::Email, Source::ClickId, A::Campaign, Certain),
    rule("token.public_referrer", &[When::Token, When::Referrer(Social)], C::Social, Source::Referrer, A::Referrer, Certain),
    rule("token.public_app", &[When::Token, When::InApp(Social)], C::Social, Source::InApp, A::InApp, Certain),
    rule("token.private", &[When::Token], C::DarkSocial, Source::InAppOrReferrer, A::Token, Certain),
    rule("in_app.messaging", &[When::InApp(Messaging)], C::DarkSocial, Source::InApp, A::InApp, Certain),
    rule("in_app.social", &[When::InApp(Social)], C::Social, Source::InApp, A::InApp, Certain),
    rule("campaign.messaging", &[When::UtmSourceKind(Messaging)], C::DarkSocial, Source::UtmSourceSite, A::Campaign, Certain),
    rule("campaign.social", &[When::UtmMedium(SOCIAL_MEDIUMS)], C::Social, Source::UtmSource, A::Campaign, Certain),
    rule("campaign.fbclid", &[When::ClickId(ClickIdKind::Facebook)], C::Social, Source::Fixed("facebook"), A::Campaign, Certain),
    rule("campaign.ai", &[When::UtmSourceKind(Ai)], C::Ai, Source::UtmSourceSite, A::Campaign, Certain),
    rule("referrer.ai", &[When::Referrer(Ai)], C::Ai, Source::Referrer, A::Referrer, Certain),
    rule("referrer.search", &[When::Referrer(Search)], C::Search, Source::Referrer, A::Referrer, Certain),
    rule("referrer.social", &[When::Referrer(Social)], C::Social, Source::Referrer, A::Referrer, Certain),
    rule("referrer.webmail", &[When::Referrer(Webmail)], C::DarkSocial, Source::Referrer, A::Referrer, Certain),
    rule("referrer.messaging", &[When::Referrer(Messaging)], C::DarkSocial, Source::Referrer, A::Referrer, Certain),
    rule("referrer.other", &[When::AnyReferrer], C::Referral, Source::Referrer, A::Referrer, Certain),
    rule("campaign.other", &[When::UtmSource], C::Referral, Source::UtmSource, A::Campaign, Probable),
    rule("heuristic.deep_link", &[When::DeepLink], C::DarkSocial, Source::None, A::Heuristic, Probable),
    rule("direct", &[], C::Direct, Source::None, A::None, Probable),
];
