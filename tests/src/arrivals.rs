//! How readers arrive on an article, as data: one row per way in, with the
//! evidence the tracker and the browser would send and the channel DESIGN.md
//! says it must be counted as. The rows are the generator's ground truth.

use lumen_schemas::Channel;

/// User agents, named for what they are.
pub mod agents {
    /// Desktop Chrome on Windows.
    pub const DESKTOP_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    /// Safari on an iPhone.
    pub const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
    /// Chrome on Android.
    pub const ANDROID_CHROME: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36";
    /// Facebook Messenger's in-app browser on iOS.
    pub const MESSENGER_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/MessengerForiOS;FBAV/458.0.0.38.108;FBBV/612345678;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/5]";
    /// WeChat's in-app browser on Android.
    pub const WECHAT_ANDROID: &str = "Mozilla/5.0 (Linux; Android 13; V2055A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64";
    /// LINE's in-app browser on iOS.
    pub const LINE_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.6.0";
    /// Facebook's own in-app browser on Android (public social).
    pub const FACEBOOK_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/489.0.0.66.81;]";
    /// Instagram's in-app browser on iOS (public social).
    pub const INSTAGRAM_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 352.0.0.26.87 (iPhone14,5; iOS 18_0; en_US; en; scale=3.00; 1170x2532; 647562154)";
    /// Facebook's link-preview fetcher.
    pub const FACEBOOK_PREVIEW: &str =
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";
    /// WhatsApp's link-preview fetcher.
    pub const WHATSAPP_PREVIEW: &str = "WhatsApp/2.24.22.79 A";
    /// Slack's link unfurler.
    pub const SLACK_PREVIEW: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
    /// Telegram's link-preview fetcher.
    pub const TELEGRAM_PREVIEW: &str = "TelegramBot (like TwitterBot)";
    /// Google's crawler.
    pub const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
}

/// Which page a reader lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// An article (a deep link).
    Article,
    /// The homepage.
    Home,
    /// An article with campaign parameters appended.
    ArticleWithQuery(&'static str),
}

/// Whether the arrival URL carries a share token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// No token.
    None,
    /// A token someone shared (explicitly or from the address bar), when one exists.
    Shared,
}

/// What the arrival must be counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A visit in this channel.
    Visit(Channel),
    /// A link-preview fetch or crawler: never a visit.
    Bot {
        /// True for link-preview fetchers (evidence of a paste into an app).
        preview: bool,
    },
}

/// One way of arriving on the site.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Row id, for reports.
    pub name: &'static str,
    /// Relative frequency.
    pub weight: u32,
    /// `document.referrer`, `{site}` replaced by the site's origin.
    pub referrer: Option<&'static str>,
    /// Browser user agent.
    pub user_agent: &'static str,
    /// The tracker's webview flag.
    pub webview: Option<&'static str>,
    /// Landing page.
    pub landing: Landing,
    /// Share token in the URL.
    pub token: TokenUse,
    /// Ground truth.
    pub expect: Expect,
}

use Channel::*;
use Expect::{Bot, Visit};
use Landing::{Article, ArticleWithQuery, Home};
use agents::*;

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per column keeps each table row on one line"
)]
const fn row(
    name: &'static str,
    weight: u32,
    referrer: Option<&'static str>,
    user_agent: &'static str,
    webview: Option<&'static str>,
    landing: Landing,
    token: TokenUse,
    expect: Expect,
) -> Arrival {
    Arrival {
        name,
        weight,
        referrer,
        user_agent,
        webview,
        landing,
        token,
        expect,
    }
}

/// The mix of arrivals, weighted roughly like a news publisher's traffic
/// where most sharing is private.
#[rustfmt::skip]
pub const ARRIVALS: &[Arrival] = &[
    // Dark social: messaging apps, webmail between people, pasted links.
    row("whatsapp_android_app", 10, Some("android-app://com.whatsapp/"), ANDROID_CHROME, None, Article, TokenUse::Shared, Visit(DarkSocial)),
    row("messenger_in_app", 6, None, MESSENGER_IOS, None, Article, TokenUse::Shared, Visit(DarkSocial)),
    row("wechat_in_app", 3, None, WECHAT_ANDROID, None, Article, TokenUse::Shared, Visit(DarkSocial)),
    row("line_in_app", 3, None, LINE_IOS, None, Article, TokenUse::Shared, Visit(DarkSocial)),
    row("telegram_webview", 4, None, ANDROID_CHROME, Some("telegram"), Article, TokenUse::Shared, Visit(DarkSocial)),
    row("gmail_web_between_people", 4, Some("https://mail.google.com/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(DarkSocial)),
    row("gmail_android_app", 2, Some("android-app://com.google.android.gm/"), ANDROID_CHROME, None, Article, TokenUse::None, Visit(DarkSocial)),
    row("pasted_token_no_referrer", 10, None, IPHONE_SAFARI, None, Article, TokenUse::Shared, Visit(DarkSocial)),
    row("deep_link_no_referrer", 8, None, IPHONE_SAFARI, None, Article, TokenUse::None, Visit(DarkSocial)),
    // Public social.
    row("facebook_referrer", 5, Some("https://www.facebook.com/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Social)),
    row("facebook_token_pasted_publicly", 2, Some("https://m.facebook.com/"), ANDROID_CHROME, None, Article, TokenUse::Shared, Visit(Social)),
    row("facebook_in_app", 3, None, FACEBOOK_ANDROID, None, Article, TokenUse::None, Visit(Social)),
    row("instagram_in_app", 2, None, INSTAGRAM_IOS, None, Article, TokenUse::None, Visit(Social)),
    row("x_tco", 3, Some("https://t.co/AbCdEf123"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Social)),
    row("linkedin", 2, Some("https://www.linkedin.com/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Social)),
    row("reddit", 2, Some("https://www.reddit.com/r/news/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Social)),
    // Search and AI assistants.
    row("google", 10, Some("https://www.google.com/"), ANDROID_CHROME, None, Article, TokenUse::None, Visit(Search)),
    row("bing", 2, Some("https://www.bing.com/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Search)),
    row("duckduckgo", 1, Some("https://duckduckgo.com/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Search)),
    row("chatgpt", 2, Some("https://chatgpt.com/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Ai)),
    row("perplexity", 1, Some("https://www.perplexity.ai/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Ai)),
    // The publisher's newsletter, read in webmail: campaign tags win.
    row("newsletter_in_gmail", 3, Some("https://mail.google.com/"), DESKTOP_CHROME, None, ArticleWithQuery("utm_source=newsletter&utm_medium=email&utm_campaign=morning"), TokenUse::None, Visit(Email)),
    row("paid_search_click", 1, Some("https://www.google.com/"), DESKTOP_CHROME, None, ArticleWithQuery("gclid=Cj0KCQiA"), TokenUse::None, Visit(Paid)),
    row("other_website", 2, Some("https://www.example-blog.org/2026/11/links"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Referral)),
    row("internal_navigation", 4, Some("{site}/"), DESKTOP_CHROME, None, Article, TokenUse::None, Visit(Internal)),
    row("homepage_typed", 4, None, DESKTOP_CHROME, None, Home, TokenUse::None, Visit(Direct)),
    // Bots and link-preview fetchers: evidence, never visits.
    row("facebook_preview", 2, None, FACEBOOK_PREVIEW, None, Article, TokenUse::Shared, Bot { preview: true }),
    row("whatsapp_preview", 3, None, WHATSAPP_PREVIEW, None, Article, TokenUse::Shared, Bot { preview: true }),
    row("slack_preview", 1, None, SLACK_PREVIEW, None, Article, TokenUse::Shared, Bot { preview: true }),
    row("telegram_preview", 1, None, TELEGRAM_PREVIEW, None, Article, TokenUse::Shared, Bot { preview: true }),
    row("googlebot", 1, None, GOOGLEBOT, None, Article, TokenUse::None, Bot { preview: false }),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_weights_positive() {
        let mut names: Vec<_> = ARRIVALS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ARRIVALS.len());
        assert!(ARRIVALS.iter().all(|a| a.weight > 0));
    }

    #[test]
    fn every_channel_of_the_taxonomy_is_exercised() {
        for channel in [
            DarkSocial, Social, Search, Ai, Email, Paid, Referral, Internal, Direct,
        ] {
            assert!(
                ARRIVALS.iter().any(|a| a.expect == Visit(channel)),
                "{channel:?} has no arrival"
            );
        }
    }

    #[test]
    fn token_arrivals_keep_their_channel_without_a_token() {
        // When no token has been shared yet, a Shared row arrives without
        // one; its expected channel must not depend on that.
        for arrival in ARRIVALS.iter().filter(|a| a.token == TokenUse::Shared) {
            assert_ne!(
                arrival.landing, Home,
                "{}: a tokenless homepage visit is direct",
                arrival.name
            );
        }
    }
}
