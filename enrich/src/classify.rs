//! The rule engine: gathers the evidence of one event (landing URL,
//! referrer, parsed user agent, tracker webview flag, token validity) and
//! returns the first rule of `rules::RULES` that holds, with the
//! `channel_source` it names.
//!
//! It owns the deep-link heuristic's path patterns (configurable per site);
//! it does not parse user agents (`user_agent.rs`) nor resolve tokens
//! (`tokens.rs`).

use std::collections::HashMap;

use regex::Regex;
use url::Url;

use crate::domains::{self, SiteKind};
use crate::error::{Error, Result};
use crate::rules::{CLICK_IDS, ClickIdKind, RULES, Rule, Source, When};
use crate::user_agent::{self, UserAgent};

/// Default article-like path: a slug of three or more words, a numeric
/// segment followed by more path (`/2026/03/...`), a long numeric id, or an
/// `.html` page. Section fronts (`/`, `/news`, `/world/europe`) do not match.
pub const DEFAULT_ARTICLE_PATH: &str = r"[^/]+-[^/]+-[^/]+/?$|/\d{4,}/[^/]|/\d{5,}/?$|\.html?$";

/// Longest campaign value kept; longer ones are cut.
const MAX_UTM_CHARS: usize = 200;

/// The landing URL's campaign tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    /// `utm_source`.
    pub source: Option<String>,
    /// `utm_medium`.
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// The deciding click id present: (platform, kind).
    pub click_id: Option<(&'static str, ClickIdKind)>,
}

/// What the referrer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The kind of site, when in a domain table.
    pub kind: Option<SiteKind>,
    /// Its table source, or its host when not in a table.
    pub source: String,
    /// The referrer is the site itself.
    pub internal: bool,
}

/// Everything the rules look at, for one event.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The user agent is a bot or a link-preview fetcher.
    pub bot: bool,
    /// The app a link-preview fetcher reveals.
    pub preview_app: Option<&'static str>,
    /// The app whose webview shows the page (UA first, then tracker flag).
    pub in_app: Option<&'static str>,
    /// The referrer, when any.
    pub referrer: Option<Referrer>,
    /// Campaign tags of the landing URL.
    pub campaign: Campaign,
    /// A well-formed share token.
    pub token: bool,
    /// The landing path looks like an article.
    pub deep_link: bool,
}

/// The outcome of classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The rule that fired.
    pub rule: &'static Rule,
    /// The source within the channel.
    pub channel_source: Option<String>,
}

/// One event as the classifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The site id, for per-site article patterns.
    pub site_id: &'a str,
    /// The landing URL.
    pub url: &'a str,
    /// The referrer, when any.
    pub referrer: Option<&'a str>,
    /// The site's host when the URL does not tell (explain's `site_host`).
    pub site_host: Option<&'a str>,
    /// The tracker's webview flag.
    pub webview: Option<&'a str>,
    /// The parsed user agent.
    pub user_agent: &'a UserAgent,
    /// Whether the landing token is well-formed.
    pub token: bool,
}

/// The rule engine with its deep-link patterns.
#[derive(Debug, Clone)]
pub struct Classifier {
    default_article: Regex,
    site_article: HashMap<String, Regex>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new(DEFAULT_ARTICLE_PATH, &[]).expect("the default article pattern compiles")
    }
}

impl Classifier {
    /// A classifier whose article-like paths match `default_article`, or a
    /// site's own pattern from `site_article` (`(site_id, regex)` pairs).
    pub fn new(default_article: &str, site_article: &[(String, String)]) -> Result<Self> {
        let compile = |pattern: &str| {
            Regex::new(pattern)
                .map_err(|e| Error::Config(format!("article path regex `{pattern}`: {e}")))
        };
        Ok(Self {
            default_article: compile(default_article)?,
            site_article: site_article
                .iter()
                .map(|(site, pattern)| Ok((site.clone(), compile(pattern)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// The evidence of one event.
    pub fn evidence(&self, input: &Input<'_>) -> Evidence {
        // A path-only URL (explain input) is read relative to the site host.
        let landing = Url::parse(input.url).ok().or_else(|| {
            let base = Url::parse(&format!("https://{}/", input.site_host?)).ok()?;
            base.join(input.url).ok()
        });
        let site_host = input
            .site_host
            .or_else(|| landing.as_ref().and_then(Url::host_str))
            .map(site_root);
        let referrer = input
            .referrer
            .filter(|r| !r.trim().is_empty())
            .and_then(|r| Url::parse(r.trim()).ok())
            .and_then(|r| referrer(&r, site_host));
        let path = landing.as_ref().map_or("/", Url::path);
        let article = self
            .site_article
            .get(input.site_id)
            .unwrap_or(&self.default_article);
        let ua = input.user_agent;
        Evidence {
            bot: ua.is_bot(),
            preview_app: ua.preview_app,
            in_app: ua
                .in_app
                .filter(|app| user_agent::app_kind(app).is_some())
                .or_else(|| input.webview.and_then(user_agent::webview_app))
                .or(ua.in_app),
            deep_link: referrer.is_none() && article.is_match(path),
            referrer,
            campaign: landing.as_ref().map(campaign).unwrap_or_default(),
            token: input.token,
        }
    }

    /// The first rule that holds for `evidence`.
    pub fn classify(&self, evidence: &Evidence) -> Classification {
        let rule = RULES
            .iter()
            .find(|rule| rule.when.iter().all(|when| holds(*when, evidence)))
            .unwrap_or(&RULES[RULES.len() - 1]);
        Classification {
            rule,
            channel_source: source(rule.source, evidence),
        }
    }
}

fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

/// First labels that name a variant of the site itself, not another site:
/// a reader on `m.` who came from `www.` navigated within the site.
const SITE_VARIANT_LABELS: &[&str] = &["www", "m", "mobile", "amp"];

/// The site's host without its variant label, unless that would leave a
/// bare suffix (`mobile.de` is a site, not the mobile variant of `de`).
fn site_root(host: &str) -> &str {
    SITE_VARIANT_LABELS
        .iter()
        .find_map(|label| host.strip_prefix(label)?.strip_prefix('.'))
        .filter(|rest| rest.contains('.'))
        .unwrap_or(host)
}

fn referrer(url: &Url, site_host: Option<&str>) -> Option<Referrer> {
    let host = url.host_str()?.to_ascii_lowercase();
    if url.scheme() == "android-app" {
        let app = domains::lookup_android_app(&host);
        return Some(Referrer {
            kind: app.map(|a| a.kind),
            source: app.map_or(host, |a| a.source.to_owned()),
            internal: false,
        });
    }
    let bare = strip_www(&host);
    // The site's own subdomains (m., amp., edition.) are the site too.
    let internal = site_host.is_some_and(|site| {
        let site = site.to_ascii_lowercase();
        bare == site
            || bare
                .strip_suffix(site.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    });
    let row = domains::lookup_host(bare, url.path());
    Some(Referrer {
        kind: row.map(|r| r.kind),
        source: row.map_or_else(|| bare.to_owned(), |r| r.source.to_owned()),
        internal,
    })
}

fn campaign(url: &Url) -> Campaign {
    let mut found = Campaign::default();
    let mut click_rank = usize::MAX;
    for (key, value) in url.query_pairs() {
        let value = || {
            let value: String = value.trim().chars().take(MAX_UTM_CHARS).collect();
            (!value.is_empty()).then_some(value)
        };
        match key.as_ref() {
            "utm_source" => found.source = value(),
            "utm_medium" => found.medium = value(),
            "utm_campaign" => found.campaign = value(),
            other => {
                // Several click ids: the table order decides, not the URL's.
                if let Some(rank) = CLICK_IDS.iter().position(|(id, ..)| *id == other)
                    && rank < click_rank
                {
                    click_rank = rank;
                    let (_, platform, kind) = CLICK_IDS[rank];
                    found.click_id = Some((platform, kind));
                }
            }
        }
    }
    found
}

fn holds(when: When, evidence: &Evidence) -> bool {
    let referrer_kind = evidence.referrer.as_ref().and_then(|r| r.kind);
    let medium = evidence.campaign.medium.as_deref();
    match when {
        When::Preview(kind) => evidence
            .preview_app
            .is_some_and(|app| user_agent::app_kind(app) == Some(kind)),
        When::Bot => evidence.bot,
        When::Internal => evidence.referrer.as_ref().is_some_and(|r| r.internal),
        When::UtmMedium(values) => {
            medium.is_some_and(|m| values.iter().any(|v| v.eq_ignore_ascii_case(m)))
        }
        When::ClickId(kind) => evidence
            .campaign
            .click_id
            .is_some_and(|(_, found)| found == kind),
        When::Token => evidence.token,
        When::InApp(kind) => evidence
            .in_app
            .is_some_and(|app| user_agent::app_kind(app) == Some(kind)),
        When::UtmSourceKind(kind) => utm_source_site(evidence).is_some_and(|row| row.kind == kind),
        When::UtmSource => evidence.campaign.source.is_some(),
        When::Referrer(kind) => referrer_kind == Some(kind),
        When::AnyReferrer => evidence.referrer.is_some(),
        When::DeepLink => evidence.deep_link,
    }
}

fn utm_source_site(evidence: &Evidence) -> Option<&'static domains::Domain> {
    let source = evidence.campaign.source.as_deref()?.to_ascii_lowercase();
    domains::lookup_host(strip_www(&source), "/").or_else(|| domains::lookup_source_name(&source))
}

fn source(source: Source, evidence: &Evidence) -> Option<String> {
    let referrer = || evidence.referrer.as_ref().map(|r| r.source.clone());
    let known_app = || {
        evidence
            .in_app
            .filter(|app| user_agent::app_kind(app).is_some())
            .map(str::to_owned)
    };
    match source {
        Source::None => None,
        Source::Fixed(value) => Some(value.to_owned()),
        Source::Referrer => referrer(),
        Source::InApp => known_app(),
        Source::PreviewApp => evidence.preview_app.map(str::to_owned),
        Source::UtmSource => evidence.campaign.source.clone(),
        Source::UtmSourceSite => utm_source_site(evidence).map(|row| row.source.to_owned()),
        Source::ClickId => evidence
            .campaign
            .click_id
            .map(|(platform, _)| platform.to_owned()),
        Source::InAppOrReferrer => known_app().or_else(referrer),
    }
}

#[cfg(test)]
mod tests {
    use lumen_schemas::{Attribution, Channel, Confidence};
    use rstest::rstest;

    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const WHATSAPP_IN_APP: &str = "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 WhatsApp/2.24.8.78";
    const FACEBOOK_IN_APP: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.48.109]";
    const WHATSAPP_PREVIEW: &str = "WhatsApp/2.23.20.0 A";
    const SLACK_PREVIEW: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
    const TWITTER_PREVIEW: &str = "Twitterbot/1.0";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const ARTICLE: &str = "https://dailyplanet.example/news/2026/solar-eclipse-over-metropolis";
    const HOME: &str = "https://dailyplanet.example/";

    /// One event: user agent, landing URL, referrer, webview flag, token.
    struct Case {
        ua: &'static str,
        url: &'static str,
        referrer: Option<&'static str>,
        webview: Option<&'static str>,
        token: bool,
    }

    const fn visit(url: &'static str, referrer: Option<&'static str>) -> Case {
        Case {
            ua: IPHONE,
            url,
            referrer,
            webview: None,
            token: false,
        }
    }

    const fn with_ua(ua: &'static str, url: &'static str, referrer: Option<&'static str>) -> Case {
        Case {
            ua,
            url,
            referrer,
            webview: None,
            token: false,
        }
    }

    const fn tokened(ua: &'static str, referrer: Option<&'static str>) -> Case {
        Case {
            ua,
            url: ARTICLE,
            referrer,
            webview: None,
            token: true,
        }
    }

    fn run(classifier: &Classifier, case: &Case) -> (Classification, Evidence) {
        let ua = user_agent::parse(case.ua, &woothee::parser::Parser::new());
        let evidence = classifier.evidence(&Input {
            site_id: "daily-planet",
            url: case.url,
            referrer: case.referrer,
            site_host: None,
            webview: case.webview,
            user_agent: &ua,
            token: case.token,
        });
        (classifier.classify(&evidence), evidence)
    }

    /// One case per rule, in table order; the test checks every rule is hit.
    #[rstest]
    #[case::bot_preview_private(
        "bot.preview_private",
        with_ua(WHATSAPP_PREVIEW, ARTICLE, None),
        Some("whatsapp")
    )]
    #[case::bot_preview_private_slack(
        "bot.preview_private",
        with_ua(SLACK_PREVIEW, ARTICLE, None),
        Some("slack")
    )]
    #[case::bot_preview_public(
        "bot.preview_public",
        with_ua(TWITTER_PREVIEW, ARTICLE, None),
        Some("x")
    )]
    #[case::bot_other("bot.other", with_ua(GOOGLEBOT, ARTICLE, None), None)]
    #[case::internal(
        "internal",
        visit(ARTICLE, Some("https://www.dailyplanet.example/")),
        None
    )]
    #[case::internal_subdomain(
        "internal",
        visit(ARTICLE, Some("https://m.dailyplanet.example/sport")),
        None
    )]
    #[case::internal_from_the_mobile_site(
        "internal",
        visit(
            "https://m.dailyplanet.example/news/2026/eclipse",
            Some("https://www.dailyplanet.example/")
        ),
        None
    )]
    #[case::lookalike_is_not_internal(
        "referrer.other",
        visit(ARTICLE, Some("https://notdailyplanet.example/")),
        Some("notdailyplanet.example")
    )]
    #[case::campaign_email(
        "campaign.email",
        visit(
            "https://dailyplanet.example/a?utm_source=morning&utm_medium=email",
            None
        ),
        Some("morning")
    )]
    #[case::campaign_paid(
        "campaign.paid",
        visit(
            "https://dailyplanet.example/a?utm_source=google&utm_medium=cpc",
            Some("https://www.google.com/")
        ),
        Some("google")
    )]
    #[case::campaign_email_click_id(
        "campaign.email_click_id",
        visit(
            "https://dailyplanet.example/a?mc_cid=4f1a2b&mc_eid=9c8d7e",
            Some("https://mail.google.com/")
        ),
        Some("mailchimp")
    )]
    #[case::campaign_click_id(
        "campaign.click_id",
        visit(
            "https://dailyplanet.example/a?gclid=abc",
            Some("https://www.google.com/")
        ),
        Some("google")
    )]
    #[case::token_public_referrer(
        "token.public_referrer",
        tokened(IPHONE, Some("https://l.facebook.com/")),
        Some("facebook")
    )]
    #[case::token_public_app("token.public_app", tokened(FACEBOOK_IN_APP, None), Some("facebook"))]
    #[case::token_private("token.private", tokened(IPHONE, None), None)]
    #[case::token_private_in_app("token.private", tokened(WHATSAPP_IN_APP, None), Some("whatsapp"))]
    #[case::token_private_webmail(
        "token.private",
        tokened(IPHONE, Some("https://mail.google.com/")),
        Some("gmail")
    )]
    #[case::in_app_messaging(
        "in_app.messaging",
        with_ua(WHATSAPP_IN_APP, HOME, None),
        Some("whatsapp")
    )]
    #[case::in_app_social(
        "in_app.social",
        with_ua(FACEBOOK_IN_APP, HOME, None),
        Some("facebook")
    )]
    #[case::campaign_social(
        "campaign.social",
        visit(
            "https://dailyplanet.example/a?utm_source=mastodon&utm_medium=social",
            None
        ),
        Some("mastodon")
    )]
    #[case::campaign_fbclid(
        "campaign.fbclid",
        visit("https://dailyplanet.example/a?fbclid=IwAR0", None),
        Some("facebook")
    )]
    #[case::campaign_messaging(
        "campaign.messaging",
        visit(
            "https://dailyplanet.example/a?utm_source=whatsapp&utm_medium=social",
            None
        ),
        Some("whatsapp")
    )]
    #[case::campaign_ai(
        "campaign.ai",
        visit("https://dailyplanet.example/a?utm_source=chatgpt.com", None),
        Some("chatgpt")
    )]
    #[case::referrer_ai(
        "referrer.ai",
        visit(ARTICLE, Some("https://www.perplexity.ai/search/x")),
        Some("perplexity")
    )]
    #[case::referrer_search(
        "referrer.search",
        visit(ARTICLE, Some("https://www.google.co.uk/")),
        Some("google")
    )]
    #[case::referrer_social("referrer.social", visit(ARTICLE, Some("https://t.co/abc")), Some("x"))]
    #[case::referrer_social_android(
        "referrer.social",
        visit(ARTICLE, Some("android-app://com.linkedin.android/")),
        Some("linkedin")
    )]
    #[case::referrer_webmail(
        "referrer.webmail",
        visit(ARTICLE, Some("https://outlook.live.com/")),
        Some("outlook")
    )]
    #[case::referrer_webmail_android(
        "referrer.webmail",
        visit(ARTICLE, Some("android-app://com.google.android.gm")),
        Some("gmail")
    )]
    #[case::referrer_messaging(
        "referrer.messaging",
        visit(ARTICLE, Some("https://web.whatsapp.com/")),
        Some("whatsapp")
    )]
    #[case::referrer_messaging_android(
        "referrer.messaging",
        visit(ARTICLE, Some("android-app://com.whatsapp/")),
        Some("whatsapp")
    )]
    #[case::referrer_other(
        "referrer.other",
        visit(ARTICLE, Some("https://blog.example.org/post")),
        Some("blog.example.org")
    )]
    #[case::campaign_other(
        "campaign.other",
        visit("https://dailyplanet.example/?utm_source=partner", None),
        Some("partner")
    )]
    #[case::deep_link("heuristic.deep_link", visit(ARTICLE, None), None)]
    #[case::direct("direct", visit(HOME, None), None)]
    #[case::direct_section(
        "direct",
        visit("https://dailyplanet.example/world/europe", None),
        None
    )]
    fn every_rule_fires_on_its_evidence(
        #[case] rule: &str,
        #[case] case: Case,
        #[case] source: Option<&str>,
    ) {
        let (classification, _) = run(&Classifier::default(), &case);
        assert_eq!(classification.rule.id, rule);
        assert_eq!(classification.channel_source.as_deref(), source);
    }

    #[test]
    fn rule_ids_are_unique_and_the_last_rule_always_holds() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert!(RULES[RULES.len() - 1].when.is_empty());
    }

    /// The documented precedence choices, each as (winner, loser) evidence.
    #[rstest]
    #[case::newsletter_beats_webmail(
        visit(
            "https://dailyplanet.example/a?utm_medium=newsletter&utm_source=daily",
            Some("https://mail.google.com/")
        ),
        Channel::Email,
        "campaign.email"
    )]
    #[case::token_with_public_referrer_is_social(
        tokened(IPHONE, Some("https://www.linkedin.com/feed/")),
        Channel::Social,
        "token.public_referrer"
    )]
    #[case::token_without_referrer_is_dark(
        tokened(IPHONE, None),
        Channel::DarkSocial,
        "token.private"
    )]
    #[case::preview_fetch_with_token_is_a_bot(
        tokened(WHATSAPP_PREVIEW, Some("https://www.facebook.com/")),
        Channel::DarkSocial,
        "bot.preview_private"
    )]
    #[case::crawler_with_search_referrer_is_a_bot(
        with_ua(GOOGLEBOT, ARTICLE, Some("https://www.google.com/")),
        Channel::Direct,
        "bot.other"
    )]
    #[case::in_app_messaging_beats_referrer(
        with_ua(WHATSAPP_IN_APP, ARTICLE, Some("https://www.google.com/")),
        Channel::DarkSocial,
        "in_app.messaging"
    )]
    #[case::webmail_without_campaign_is_dark(
        visit(ARTICLE, Some("https://mail.yahoo.com/d/folders/1")),
        Channel::DarkSocial,
        "referrer.webmail"
    )]
    #[case::ai_path_beats_search_brand(
        visit(ARTICLE, Some("https://www.bing.com/chat?q=x")),
        Channel::Ai,
        "referrer.ai"
    )]
    fn documented_precedence(#[case] case: Case, #[case] channel: Channel, #[case] rule: &str) {
        let (classification, evidence) = run(&Classifier::default(), &case);
        assert_eq!(classification.rule.id, rule);
        assert_eq!(classification.rule.channel, channel);
        if case.ua == WHATSAPP_PREVIEW || case.ua == GOOGLEBOT {
            assert!(evidence.bot, "a preview fetcher is never a visit");
        }
    }

    #[test]
    fn tracker_webview_flag_reveals_telegram() {
        let case = Case {
            webview: Some("telegram"),
            ..visit(HOME, None)
        };
        let (classification, evidence) = run(&Classifier::default(), &case);
        assert_eq!(evidence.in_app, Some("telegram"));
        assert_eq!(classification.rule.id, "in_app.messaging");
        assert_eq!(classification.rule.attribution, Attribution::InApp);
    }

    #[test]
    fn heuristic_outcomes_are_probable() {
        for id in ["heuristic.deep_link", "direct", "campaign.other"] {
            let rule = RULES.iter().find(|r| r.id == id).expect("rule");
            assert_eq!(rule.confidence, Confidence::Probable, "{id}");
        }
    }

    #[rstest]
    #[case("www.dailyplanet.example", "dailyplanet.example")]
    #[case("m.dailyplanet.example", "dailyplanet.example")]
    #[case("amp.dailyplanet.co.uk", "dailyplanet.co.uk")]
    #[case("mobile.de", "mobile.de")]
    #[case("m.example", "m.example")]
    #[case("edition.dailyplanet.example", "edition.dailyplanet.example")]
    fn site_variants_share_the_root(#[case] host: &str, #[case] root: &str) {
        assert_eq!(site_root(host), root);
    }

    #[rstest]
    #[case("/", false)]
    #[case("/news", false)]
    #[case("/news/", false)]
    #[case("/world/europe", false)]
    #[case("/news/2026/eclipse", true)]
    #[case("/solar-eclipse-over-metropolis", true)]
    #[case("/article/1234567", true)]
    #[case("/story.html", true)]
    fn default_article_paths(#[case] path: &str, #[case] article: bool) {
        let url = format!("https://dailyplanet.example{path}");
        let case = Case {
            url: Box::leak(url.into_boxed_str()),
            ..visit(HOME, None)
        };
        let (_, evidence) = run(&Classifier::default(), &case);
        assert_eq!(evidence.deep_link, article, "{path}");
    }

    #[test]
    fn per_site_article_pattern_overrides_the_default() {
        let classifier = Classifier::new(
            DEFAULT_ARTICLE_PATH,
            &[("daily-planet".into(), "^/p/[0-9]+$".into())],
        )
        .expect("valid");
        let (short, _) = run(
            &classifier,
            &visit("https://dailyplanet.example/p/42", None),
        );
        assert_eq!(short.rule.id, "heuristic.deep_link");
        let (slug, _) = run(&classifier, &visit(ARTICLE, None));
        assert_eq!(slug.rule.id, "direct");
    }

    #[test]
    fn invalid_article_pattern_is_a_config_error() {
        let error = Classifier::new("(", &[]).expect_err("invalid regex");
        assert_eq!(error.reason(), "config");
    }

    #[test]
    fn path_only_urls_are_read_against_the_site_host() {
        let ua = user_agent::parse(IPHONE, &woothee::parser::Parser::new());
        let evidence = Classifier::default().evidence(&Input {
            site_id: "daily-planet",
            url: "/news/2026/eclipse?utm_medium=email",
            referrer: None,
            site_host: Some("dailyplanet.example"),
            webview: None,
            user_agent: &ua,
            token: false,
        });
        assert!(evidence.deep_link);
        assert_eq!(evidence.campaign.medium.as_deref(), Some("email"));
    }

    #[rstest]
    #[case::garbage_url("not a url", Some("::::"))]
    #[case::empty_referrer(ARTICLE, Some(""))]
    #[case::hostless_referrer(ARTICLE, Some("data:text/plain,hi"))]
    fn garbage_never_panics(#[case] url: &'static str, #[case] referrer: Option<&'static str>) {
        let (classification, _) = run(&Classifier::default(), &visit(url, referrer));
        assert!(!classification.rule.id.is_empty());
    }
}
