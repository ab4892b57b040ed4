//! User-agent parsing: woothee (its data is bundled in the crate, so nothing
//! is downloaded at build or run time) for browser, OS and device class,
//! then our own tables of bots and link-preview fetchers and of in-app
//! browsers, all behind an LRU cache because UA strings repeat heavily.
//!
//! What an in-app browser or a preview fetch *means* for the channel is
//! decided by `rules.rs`; this module only says what the string reveals.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use lumen_schemas::DeviceType;

use crate::domains::SiteKind;

/// How a table row recognises a user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher {
    /// The UA starts with this (WhatsApp's fetcher is `WhatsApp/2.x`, while
    /// its name inside a browser UA means something else).
    Prefix(&'static str),
    /// The UA contains this anywhere.
    Contains(&'static str),
}

impl Matcher {
    fn matches(self, user_agent: &str) -> bool {
        match self {
            Self::Prefix(prefix) => user_agent.starts_with(prefix),
            Self::Contains(needle) => user_agent.contains(needle),
        }
    }
}

/// One row of the bot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bot {
    /// How to recognise it.
    pub matcher: Matcher,
    /// The `bot_name` it gets.
    pub name: &'static str,
    /// For link-preview fetchers: the app the link was pasted into.
    pub preview_app: Option<&'static str>,
}

/// One row of the in-app browser table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InApp {
    /// How to recognise it.
    pub matcher: Matcher,
    /// The app name (`in_app`), a key of [`APPS`].
    pub app: &'static str,
}

const fn preview(matcher: Matcher, name: &'static str, app: &'static str) -> Bot {
    Bot {
        matcher,
        name,
        preview_app: Some(app),
    }
}

const fn crawler(matcher: Matcher, name: &'static str) -> Bot {
    Bot {
        matcher,
        name,
        preview_app: None,
    }
}

const fn in_app(matcher: Matcher, app: &'static str) -> InApp {
    InApp { matcher, app }
}

use Matcher::{Contains, Prefix};

/// Bots, first match wins: link-preview fetchers (with the app they
/// reveal), search and AI crawlers, headless browsers and HTTP libraries.
pub const BOTS: &[Bot] = &[
    // iMessage's preview agent borrows both names: before either.
    preview(
        Contains("Facebot Twitterbot"),
        "imessage_preview",
        "imessage",
    ),
    preview(
        Prefix("facebookexternalhit"),
        "facebookexternalhit",
        "facebook",
    ),
    preview(Prefix("WhatsApp/"), "whatsapp_preview", "whatsapp"),
    preview(Contains("Slackbot-LinkExpanding"), "slackbot", "slack"),
    preview(Contains("Slack-ImgProxy"), "slack_imgproxy", "slack"),
    preview(Contains("Twitterbot"), "twitterbot", "x"),
    preview(Contains("TelegramBot"), "telegrambot", "telegram"),
    preview(Contains("Discordbot"), "discordbot", "discord"),
    preview(Contains("LinkedInBot"), "linkedinbot", "linkedin"),
    preview(Contains("SkypeUriPreview"), "skype_preview", "skype"),
    preview(Contains("Pinterestbot"), "pinterestbot", "pinterest"),
    preview(Contains("redditbot"), "redditbot", "reddit"),
    preview(Contains("Bluesky Cardyb"), "bluesky_cardyb", "bluesky"),
    preview(Contains("Mastodon/"), "mastodon_preview", "mastodon"),
    preview(Contains("vkShare"), "vkshare", "vk"),
    preview(Contains("Snap URL Preview"), "snap_preview", "snapchat"),
    crawler(Contains("Googlebot"), "googlebot"),
    crawler(Contains("Google-InspectionTool"), "google_inspection"),
    crawler(Contains("bingbot"), "bingbot"),
    crawler(Contains("YandexBot"), "yandexbot"),
    crawler(Contains("Baiduspider"), "baiduspider"),
    crawler(Contains("DuckDuckBot"), "duckduckbot"),
    crawler(Contains("Applebot"), "applebot"),
    crawler(Contains("PetalBot"), "petalbot"),
    crawler(Contains("AhrefsBot"), "ahrefsbot"),
    crawler(Contains("SemrushBot"), "semrushbot"),
    crawler(Contains("GPTBot"), "gptbot"),
    crawler(Contains("OAI-SearchBot"), "oai_searchbot"),
    crawler(Contains("ChatGPT-User"), "chatgpt_user"),
    crawler(Contains("ClaudeBot"), "claudebot"),
    crawler(Contains("PerplexityBot"), "perplexitybot"),
    crawler(Contains("CCBot"), "ccbot"),
    crawler(Contains("Bytespider"), "bytespider"),
    crawler(Contains("HeadlessChrome"), "headless_chrome"),
    crawler(Contains("PhantomJS"), "phantomjs"),
    crawler(Contains("Chrome-Lighthouse"), "lighthouse"),
    crawler(Prefix("python-requests/"), "python_requests"),
    crawler(Prefix("curl/"), "curl"),
    crawler(Prefix("Wget/"), "wget"),
    crawler(Prefix("Go-http-client/"), "go_http_client"),
    crawler(Prefix("axios/"), "axios"),
    crawler(Prefix("okhttp/"), "okhttp"),
    crawler(Prefix("Apache-HttpClient/"), "apache_httpclient"),
    crawler(Prefix("python-httpx/"), "python_httpx"),
    crawler(Prefix("Scrapy/"), "scrapy"),
];

/// In-app browsers, first match wins: Messenger before Facebook (both say
/// `FBAN`), specific apps before the generic Android webview marker.
pub const IN_APP: &[InApp] = &[
    in_app(Contains("FBAN/Messenger"), "messenger"),
    in_app(Contains("FB_IAB/MESSENGER"), "messenger"),
    // Orca: Messenger's Android package (`com.facebook.orca`).
    in_app(Contains("FB_IAB/Orca-Android"), "messenger"),
    in_app(Contains("FBAN/"), "facebook"),
    in_app(Contains("FBAV/"), "facebook"),
    in_app(Contains("FB_IAB"), "facebook"),
    in_app(Contains("Instagram"), "instagram"),
    in_app(Contains("Barcelona"), "threads"),
    in_app(Contains("MicroMessenger"), "wechat"),
    in_app(Contains(" Line/"), "line"),
    in_app(Contains("WhatsApp"), "whatsapp"),
    in_app(Contains("Snapchat"), "snapchat"),
    in_app(Contains("musical_ly"), "tiktok"),
    in_app(Contains("Bytedance"), "tiktok"),
    in_app(Contains("LinkedInApp"), "linkedin"),
    in_app(Contains("TwitterAndroid"), "x"),
    in_app(Contains("Twitter for"), "x"),
    in_app(Contains("Pinterest"), "pinterest"),
    in_app(Contains("Viber"), "viber"),
    in_app(Contains("KAKAOTALK"), "kakaotalk"),
    in_app(Contains("Telegram"), "telegram"),
    in_app(Contains("GSA/"), "google_app"),
    in_app(Contains("; wv)"), "android_webview"),
];

/// What each app is; `None` for generic webviews that say nothing about
/// where the link came from. Also the accepted values of the tracker's
/// `webview` flag.
pub const APPS: &[(&str, Option<SiteKind>)] = &[
    ("whatsapp", Some(SiteKind::Messaging)),
    ("messenger", Some(SiteKind::Messaging)),
    ("wechat", Some(SiteKind::Messaging)),
    ("line", Some(SiteKind::Messaging)),
    ("telegram", Some(SiteKind::Messaging)),
    ("snapchat", Some(SiteKind::Messaging)),
    ("viber", Some(SiteKind::Messaging)),
    ("kakaotalk", Some(SiteKind::Messaging)),
    ("signal", Some(SiteKind::Messaging)),
    ("slack", Some(SiteKind::Messaging)),
    ("discord", Some(SiteKind::Messaging)),
    ("teams", Some(SiteKind::Messaging)),
    ("skype", Some(SiteKind::Messaging)),
    ("imessage", Some(SiteKind::Messaging)),
    ("facebook", Some(SiteKind::Social)),
    ("instagram", Some(SiteKind::Social)),
    ("threads", Some(SiteKind::Social)),
    ("x", Some(SiteKind::Social)),
    ("linkedin", Some(SiteKind::Social)),
    ("tiktok", Some(SiteKind::Social)),
    ("pinterest", Some(SiteKind::Social)),
    ("reddit", Some(SiteKind::Social)),
    ("bluesky", Some(SiteKind::Social)),
    ("mastodon", Some(SiteKind::Social)),
    ("vk", Some(SiteKind::Social)),
    ("google_app", Some(SiteKind::Search)),
    ("android_webview", None),
];

/// The kind of a known app, `None` for generic webviews and unknown names.
pub fn app_kind(app: &str) -> Option<SiteKind> {
    APPS.iter()
        .find(|(name, _)| *name == app)
        .and_then(|(_, kind)| *kind)
}

/// The tracker's `webview` flag as a known app name; unknown values are
/// ignored so a client cannot invent label values.
pub fn webview_app(flag: &str) -> Option<&'static str> {
    APPS.iter()
        .map(|(name, _)| *name)
        .find(|name| name.eq_ignore_ascii_case(flag.trim()))
}

/// woothee OS names to the families we report, by prefix.
const OS_FAMILIES: &[(&str, &str)] = &[
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("iPod", "iOS"),
    ("Mac OSX", "macOS"),
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("ChromeOS", "ChromeOS"),
    ("Linux", "Linux"),
];

/// woothee's placeholder for a field it could not read.
const UNKNOWN: &str = "UNKNOWN";

/// A woothee field, unless empty or its `UNKNOWN` placeholder.
fn field(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && *v != UNKNOWN)
}

/// What a user agent reveals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// Browser family, `Other` when unknown.
    pub browser_family: String,
    /// Browser major version.
    pub browser_major: Option<String>,
    /// OS family, `Other` when unknown.
    pub os_family: String,
    /// Device class.
    pub device_type: DeviceType,
    /// The app whose webview shows the page.
    pub in_app: Option<&'static str>,
    /// The bot table row or woothee crawler name, when a bot.
    pub bot_name: Option<String>,
    /// For link-preview fetchers: the app the link was pasted into.
    pub preview_app: Option<&'static str>,
}

impl UserAgent {
    /// Whether this is a bot (never a visit).
    pub fn is_bot(&self) -> bool {
        self.bot_name.is_some()
    }
}

/// Parses user agents without a cache.
pub fn parse(user_agent: &str, woothee: &woothee::parser::Parser) -> UserAgent {
    let parsed = woothee.parse(user_agent);
    let name = field(parsed.as_ref().map(|p| p.name));
    let version = field(parsed.as_ref().map(|p| p.version));
    let os = field(parsed.as_ref().map(|p| p.os));
    let category = parsed.as_ref().map_or(UNKNOWN, |p| p.category);
    let bot = BOTS.iter().find(|row| row.matcher.matches(user_agent));
    let bot_name = match bot {
        Some(row) => Some(row.name.to_owned()),
        None if category == "crawler" => Some(
            name.unwrap_or("crawler")
                .to_ascii_lowercase()
                .replace(' ', "_"),
        ),
        None => None,
    };
    // A fetcher is no webview, whatever app its name mentions
    // (`WhatsApp/2.x`, `TelegramBot`, `Pinterestbot`).
    let in_app = match bot_name {
        Some(_) => None,
        None => IN_APP
            .iter()
            .find(|row| row.matcher.matches(user_agent))
            .map(|row| row.app),
    };
    let device_type = if bot_name.is_some() {
        DeviceType::Bot
    } else {
        device_type(category, os.unwrap_or_default(), user_agent)
    };
    UserAgent {
        browser_family: name.unwrap_or("Other").to_owned(),
        browser_major: version
            .and_then(|v| v.split('.').next())
            .filter(|major| !major.is_empty())
            .map(str::to_owned),
        os_family: os
            .and_then(|os| {
                OS_FAMILIES
                    .iter()
                    .find(|(prefix, _)| os.starts_with(prefix))
                    .map(|(_, family)| *family)
            })
            .or(os)
            .unwrap_or("Other")
            .to_owned(),
        device_type,
        in_app,
        bot_name,
        preview_app: bot.and_then(|row| row.preview_app),
    }
}

fn device_type(category: &str, os: &str, user_agent: &str) -> DeviceType {
    // woothee files tablets under "smartphone": iPads and Android devices
    // without the "Mobile" token are tablets.
    let tablet = os == "iPad" || (os == "Android" && !user_agent.contains("Mobile"));
    match category {
        "pc" => DeviceType::Desktop,
        "smartphone" if tablet => DeviceType::Tablet,
        "smartphone" | "mobilephone" => DeviceType::Mobile,
        "crawler" => DeviceType::Bot,
        _ => DeviceType::Other,
    }
}

/// Whether a lookup was answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Answered from the cache.
    Hit,
    /// Parsed and cached.
    Miss,
}

/// The parser behind an LRU cache of parsed user agents.
pub struct UserAgentParser {
    woothee: woothee::parser::Parser,
    cache: LruCache<String, Arc<UserAgent>>,
}

impl UserAgentParser {
    /// A parser caching up to `capacity` distinct user agents.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            woothee: woothee::parser::Parser::new(),
            cache: LruCache::new(capacity),
        }
    }

    /// The parsed user agent, from the cache when seen recently.
    pub fn parse(&mut self, user_agent: &str) -> (Arc<UserAgent>, CacheOutcome) {
        if let Some(parsed) = self.cache.get(user_agent) {
            return (Arc::clone(parsed), CacheOutcome::Hit);
        }
        let parsed = Arc::new(parse(user_agent, &self.woothee));
        self.cache.put(user_agent.to_owned(), Arc::clone(&parsed));
        (parsed, CacheOutcome::Miss)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const ANDROID_CHROME: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const WINDOWS_FIREFOX: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const MAC_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

    fn parse_one(user_agent: &str) -> UserAgent {
        parse(user_agent, &woothee::parser::Parser::new())
    }

    #[rstest]
    #[case(IPHONE_SAFARI, "Safari", Some("17"), "iOS", DeviceType::Mobile)]
    #[case(ANDROID_CHROME, "Chrome", Some("124"), "Android", DeviceType::Mobile)]
    #[case(ANDROID_TABLET, "Chrome", Some("124"), "Android", DeviceType::Tablet)]
    #[case(IPAD, "Safari", Some("17"), "iOS", DeviceType::Tablet)]
    #[case(
        WINDOWS_FIREFOX,
        "Firefox",
        Some("125"),
        "Windows",
        DeviceType::Desktop
    )]
    #[case(MAC_CHROME, "Chrome", Some("124"), "macOS", DeviceType::Desktop)]
    #[case("", "Other", None, "Other", DeviceType::Other)]
    #[case("\u{0}\u{ffff}garbage", "Other", None, "Other", DeviceType::Other)]
    fn parses_browsers(
        #[case] user_agent: &str,
        #[case] family: &str,
        #[case] major: Option<&str>,
        #[case] os: &str,
        #[case] device: DeviceType,
    ) {
        let parsed = parse_one(user_agent);
        assert_eq!(parsed.browser_family, family);
        assert_eq!(parsed.browser_major.as_deref(), major);
        assert_eq!(parsed.os_family, os);
        assert_eq!(parsed.device_type, device);
        assert!(!parsed.is_bot());
    }

    /// One real-world sample per bot row, in table order.
    const BOT_SAMPLES: &[&str] = &[
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "WhatsApp/2.23.20.0 A",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Slack-ImgProxy (+https://api.slack.com/robots)",
        "Twitterbot/1.0",
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
        "Pinterestbot/1.0 (+http://www.pinterest.com/bot.html)",
        "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
        "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
        "http.rb/5.1.1 (Mastodon/4.2.8; +https://mastodon.social/) Bot",
        "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
        "Mozilla/5.0 (compatible; Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1)",
        "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; OAI-SearchBot/1.0; +https://openai.com/searchbot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        "CCBot/2.0 (https://commoncrawl.org/faq/)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "python-requests/2.31.0",
        "curl/8.5.0",
        "Wget/1.21.4",
        "Go-http-client/1.1",
        "axios/1.6.8",
        "okhttp/4.12.0",
        "Apache-HttpClient/4.5.14 (Java/17.0.10)",
        "python-httpx/0.27.0",
        "Scrapy/2.11.1 (+https://scrapy.org)",
    ];

    #[test]
    fn every_bot_row_has_a_sample_that_hits_it_first() {
        assert_eq!(BOT_SAMPLES.len(), BOTS.len(), "one sample per row");
        for (row, sample) in BOTS.iter().zip(BOT_SAMPLES) {
            let parsed = parse_one(sample);
            assert_eq!(parsed.bot_name.as_deref(), Some(row.name), "{sample}");
            assert_eq!(parsed.preview_app, row.preview_app, "{sample}");
            assert_eq!(parsed.device_type, DeviceType::Bot, "{sample}");
            assert_eq!(parsed.in_app, None, "a fetcher is no webview: {sample}");
        }
    }

    /// One real-world sample per in-app row, in table order.
    const IN_APP_SAMPLES: &[&str] = &[
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/MessengerForiOS;FBAV/455.0.0.36.108;FBBV/580310040;FBDV/iPhone15,2]",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36 [FB_IAB/MESSENGER;FBAV/452.0.0.42.109;]",
        "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 [FB_IAB/Orca-Android;FBAV/452.0.0.42.109;]",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.48.109;FBBV/584426475]",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAV/460.0.0.48.109]",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36 [FB_IAB/FB4A;]",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 329.0.3.29.108 (iPhone15,2; iOS 17_4; en_US)",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Barcelona 329.0.0.29.120",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003129) NetType/WIFI Language/zh_CN",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.5.0",
        "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 WhatsApp/2.24.8.78",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/12.85.0.40 (like Safari/8617.1.17.10.8)",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_34.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36 trill_340103 BytedanceWebview/d8a21c6",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [LinkedInApp]/9.29.8241",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36 TwitterAndroid",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Twitter for iPhone/10.40",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",
        "Mozilla/5.0 (Linux; Android 13; SM-A536B; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36 Viber/21.6.0.0",
        "Mozilla/5.0 (Linux; Android 13; SM-S911N; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36;KAKAOTALK 2410420",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36 Telegram-Android/10.11.2",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/314.0.630181543 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36",
    ];

    #[test]
    fn every_in_app_row_has_a_sample_that_hits_it_first() {
        assert_eq!(IN_APP_SAMPLES.len(), IN_APP.len(), "one sample per row");
        for (row, sample) in IN_APP.iter().zip(IN_APP_SAMPLES) {
            let parsed = parse_one(sample);
            assert_eq!(parsed.in_app, Some(row.app), "{sample}");
            assert!(!parsed.is_bot(), "{sample}");
        }
    }

    #[test]
    fn every_app_name_of_the_tables_has_a_kind_row() {
        let names = IN_APP
            .iter()
            .map(|row| row.app)
            .chain(BOTS.iter().filter_map(|row| row.preview_app));
        for name in names {
            assert!(
                APPS.iter().any(|(app, _)| *app == name),
                "{name} missing from APPS"
            );
        }
    }

    #[rstest]
    #[case("telegram", Some("telegram"))]
    #[case(" Telegram ", Some("telegram"))]
    #[case("made-up-app", None)]
    fn accepts_known_webview_flags(#[case] flag: &str, #[case] app: Option<&str>) {
        assert_eq!(webview_app(flag), app);
    }

    #[test]
    fn cache_answers_repeats() {
        let mut parser = UserAgentParser::new(NonZeroUsize::MIN);
        assert_eq!(parser.parse(IPHONE_SAFARI).1, CacheOutcome::Miss);
        assert_eq!(parser.parse(IPHONE_SAFARI).1, CacheOutcome::Hit);
        assert_eq!(parser.parse(MAC_CHROME).1, CacheOutcome::Miss);
        assert_eq!(parser.parse(IPHONE_SAFARI).1, CacheOutcome::Miss, "evicted");
    }
}
