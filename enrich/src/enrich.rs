//! One raw event in, one enriched event (and, for an explicit share, its
//! share record) out: user agent, token resolution and channel rules put
//! together. Shared by the Kafka pipeline and `lumen-enrich explain`; knows
//! nothing about Kafka.

use std::num::NonZeroUsize;

use lumen_schemas::{EnrichedEvent, EventKind, RawEvent, ShareRecord, ShareToken, TokenStatus};

use crate::classify::{Classifier, Input};
use crate::error::{Error, Result};
use crate::tokens::{Resolution, TokenStore};
use crate::user_agent::{CacheOutcome, UserAgentParser};

/// What enriching one event produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Enriched {
    /// The enriched event.
    pub event: EnrichedEvent,
    /// For an explicit share with a valid token: the record for
    /// `lumen.shares` (already in the token store).
    pub share: Option<ShareRecord>,
    /// The id of the rule that decided the channel (a bounded metric
    /// label, unlike the event's owned copy).
    pub rule: &'static str,
    /// Whether the user agent came from the cache.
    pub ua_cache: CacheOutcome,
    /// For bots: the app a preview fetch reveals, `none` for other bots
    /// (a bounded metric label).
    pub bot: Option<&'static str>,
}

/// The enrichment state: rules, user-agent cache, token store.
pub struct Enricher {
    classifier: Classifier,
    user_agents: UserAgentParser,
    tokens: TokenStore,
}

impl Enricher {
    /// An enricher with these parts.
    pub fn new(classifier: Classifier, ua_cache_entries: NonZeroUsize, tokens: TokenStore) -> Self {
        Self {
            classifier,
            user_agents: UserAgentParser::new(ua_cache_entries),
            tokens,
        }
    }

    /// The token store (restored and pruned by the consume loop).
    pub fn tokens(&mut self) -> &mut TokenStore {
        &mut self.tokens
    }

    /// Enriches `raw`, read from `partition`. `site_host` overrides the
    /// landing URL's host for internal-referrer detection.
    pub fn enrich(
        &mut self,
        partition: i32,
        raw: RawEvent,
        site_host: Option<&str>,
    ) -> Result<Enriched> {
        let (user_agent, ua_cache) = self.user_agents.parse(&raw.user_agent);
        let share = match raw.kind {
            EventKind::Share => share_record(&raw)?,
            EventKind::Pageview => None,
        };
        if let Some(record) = &share {
            self.tokens
                .insert(partition, record.clone(), raw.received_at);
        }
        let resolution = match raw.kind {
            EventKind::Pageview => {
                self.tokens
                    .resolve(partition, raw.landing_token.as_deref(), raw.received_at)
            }
            EventKind::Share => self.tokens.resolve(partition, None, raw.received_at),
        };
        let evidence = self.classifier.evidence(&Input {
            site_id: &raw.site_id,
            url: &raw.url,
            referrer: raw.referrer.as_deref(),
            site_host,
            webview: raw.webview.as_deref(),
            user_agent: &user_agent,
            token: resolution.is_valid(),
        });
        let classification = self.classifier.classify(&evidence);
        let bot = user_agent
            .is_bot()
            .then_some(user_agent.preview_app.unwrap_or("none"));
        let rule = classification.rule;
        let campaign = evidence.campaign;
        let Resolution {
            status,
            share_age_seconds,
            method,
            target,
            sharer_visitor_id,
            parent_token,
        } = resolution;
        let event = EnrichedEvent {
            channel: rule.channel,
            channel_source: classification.channel_source,
            attribution: rule.attribution,
            confidence: rule.confidence,
            rule: rule.id.to_owned(),
            browser_family: user_agent.browser_family.clone(),
            browser_major: user_agent.browser_major.clone(),
            os_family: user_agent.os_family.clone(),
            device_type: user_agent.device_type,
            in_app: evidence.in_app.map(str::to_owned),
            is_bot: user_agent.is_bot(),
            bot_name: user_agent.bot_name.clone(),
            preview_app: user_agent.preview_app.map(str::to_owned),
            utm_source: campaign.source,
            utm_medium: campaign.medium,
            utm_campaign: campaign.campaign,
            token_status: status,
            share_age_seconds,
            landing_share_method: method,
            landing_share_target: target,
            landing_sharer_visitor_id: sharer_visitor_id,
            landing_parent_token: parent_token,
            event_id: raw.event_id,
            site_id: raw.site_id,
            kind: raw.kind,
            received_at: raw.received_at,
            sent_at: raw.sent_at,
            url: raw.url,
            referrer: raw.referrer,
            user_agent: raw.user_agent,
            visitor_id: raw.visitor_id,
            minted_token: raw.minted_token,
            landing_token: raw.landing_token,
            webview: raw.webview,
            share_token: raw.share_token,
            share_method: raw.share_method,
            share_target: raw.share_target,
            parent_token: raw.parent_token,
        };
        Ok(Enriched {
            event,
            share,
            rule: rule.id,
            ua_cache,
            bot,
        })
    }
}

/// The share record of an explicit share; `None` when its token is
/// malformed (nothing could ever resolve it), an error when a field every
/// share has is missing.
fn share_record(raw: &RawEvent) -> Result<Option<ShareRecord>> {
    let token = raw
        .share_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(Error::InvalidShare("share_token"))?;
    let method = raw
        .share_method
        .ok_or(Error::InvalidShare("share_method"))?;
    if ShareToken::parse_at(token, raw.received_at).is_err() {
        return Ok(None);
    }
    Ok(Some(ShareRecord {
        token: token.to_owned(),
        site_id: raw.site_id.clone(),
        event_id: raw.event_id.clone(),
        shared_at: raw.received_at,
        share_method: method,
        share_target: raw.share_target.clone(),
        parent_token: raw.parent_token.clone(),
        sharer_visitor_id: raw.visitor_id.clone(),
        url: raw.url.clone(),
    }))
}

/// The token lookup outcome of an enriched event, for the metric; `None`
/// when the event carried no landing token.
pub fn token_lookup(event: &EnrichedEvent) -> Option<&'static str> {
    match event.token_status {
        TokenStatus::Absent => None,
        TokenStatus::Explicit => Some("hit"),
        TokenStatus::AddressBar => Some("address_bar"),
        TokenStatus::Invalid => Some("invalid"),
    }
}

#[cfg(test)]
mod tests {
    use lumen_schemas::{Channel, ShareMethod};

    use super::*;

    const TOKEN: &str = "AcB3bAEjRWeJq83Q";
    const MINTED_MS: i64 = 1_763_442_000_000;

    fn enricher() -> Enricher {
        Enricher::new(
            Classifier::default(),
            NonZeroUsize::MIN,
            TokenStore::new(30 * 86_400_000, 1 << 20),
        )
    }

    fn raw(kind: EventKind) -> RawEvent {
        RawEvent {
            event_id: "e1".into(),
            site_id: "daily-planet".into(),
            kind,
            received_at: MINTED_MS + 60_000,
            sent_at: None,
            url: "https://dailyplanet.example/news/solar-eclipse-tonight".into(),
            referrer: None,
            user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1".into(),
            visitor_id: "v1".into(),
            minted_token: None,
            landing_token: None,
            webview: None,
            share_token: None,
            share_method: None,
            share_target: None,
            parent_token: None,
        }
    }

    #[test]
    fn share_then_visit_resolves_the_explicit_share() {
        let mut enricher = enricher();
        let mut share = raw(EventKind::Share);
        share.share_token = Some(TOKEN.into());
        share.share_method = Some(ShareMethod::Button);
        share.share_target = Some("whatsapp".into());
        let shared = enricher.enrich(2, share, None).expect("share");
        assert_eq!(shared.share.as_ref().map(|s| s.token.as_str()), Some(TOKEN));

        let mut visit = raw(EventKind::Pageview);
        visit.landing_token = Some(TOKEN.into());
        visit.received_at = MINTED_MS + 600_000;
        let enriched = enricher.enrich(2, visit, None).expect("visit").event;
        assert_eq!(enriched.token_status, TokenStatus::Explicit);
        assert_eq!(enriched.channel, Channel::DarkSocial);
        assert_eq!(enriched.rule, "token.private");
        assert_eq!(enriched.share_age_seconds, Some(600));
        assert_eq!(enriched.landing_share_method, Some(ShareMethod::Button));
        assert_eq!(enriched.landing_sharer_visitor_id.as_deref(), Some("v1"));
        assert_eq!(token_lookup(&enriched), Some("hit"));
    }

    #[test]
    fn forged_token_is_flagged_and_ignored() {
        let mut visit = raw(EventKind::Pageview);
        visit.landing_token = Some("AcB3bAEjRWeJq83R".into());
        visit.referrer = Some("https://www.google.com/".into());
        let enriched = enricher().enrich(0, visit, None).expect("visit").event;
        assert_eq!(enriched.token_status, TokenStatus::Invalid);
        assert_eq!(enriched.channel, Channel::Search);
        assert_eq!(token_lookup(&enriched), Some("invalid"));
    }

    #[test]
    fn share_without_token_is_rejected_and_forged_share_not_recorded() {
        let mut enricher = enricher();
        let share = raw(EventKind::Share);
        let error = enricher
            .enrich(0, share.clone(), None)
            .expect_err("no token");
        assert_eq!(error.reason(), "invalid_share");
        let mut forged = share;
        forged.share_token = Some("forged".into());
        forged.share_method = Some(ShareMethod::Copy);
        let enriched = enricher.enrich(0, forged, None).expect("enriched anyway");
        assert_eq!(enriched.share, None);
        assert!(enricher.tokens().is_empty());
    }
}
