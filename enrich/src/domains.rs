//! Our own tables of referrer domains (web hosts with optional path
//! prefixes) and Android app referrers (`android-app://PACKAGE`), each row
//! naming the kind of site and the `channel_source` it stands for.
//!
//! Written by us from public knowledge of these services; Snowplow's
//! referers.yml is GPL-3.0 and is neither copied nor loaded. This module only
//! answers "what is this referrer?"; which channel that means is decided by
//! the rule table in `rules.rs`.

/// What kind of site a referrer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// A search engine.
    Search,
    /// A public social network.
    Social,
    /// A webmail or mail app: person-to-person e-mail.
    Webmail,
    /// An AI assistant.
    Ai,
    /// A messaging web client or app: private conversations.
    Messaging,
}

/// One row of the web-host table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    /// `example.com` matches that host and its subdomains; `google.*`
    /// matches the brand label followed by a public suffix (`google.de`,
    /// `www.google.co.uk`).
    pub pattern: &'static str,
    /// When set, the referrer path must start with it.
    pub path_prefix: Option<&'static str>,
    /// What the site is.
    pub kind: SiteKind,
    /// The `channel_source` it stands for.
    pub source: &'static str,
}

/// One row of the Android app referrer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AndroidApp {
    /// The package name, as in `android-app://com.whatsapp`.
    pub package: &'static str,
    /// What the app is.
    pub kind: SiteKind,
    /// The `channel_source` it stands for.
    pub source: &'static str,
}

const fn host(pattern: &'static str, kind: SiteKind, source: &'static str) -> Domain {
    Domain {
        pattern,
        path_prefix: None,
        kind,
        source,
    }
}

const fn path(
    pattern: &'static str,
    prefix: &'static str,
    kind: SiteKind,
    source: &'static str,
) -> Domain {
    Domain {
        pattern,
        path_prefix: Some(prefix),
        kind,
        source,
    }
}

const fn app(package: &'static str, kind: SiteKind, source: &'static str) -> AndroidApp {
    AndroidApp {
        package,
        kind,
        source,
    }
}

use SiteKind::{Ai, Messaging, Search, Social, Webmail};

/// Web hosts, first match wins: specific hosts and paths (Gmail, Bing's
/// Copilot chat) come before the brand they belong to.
pub const DOMAINS: &[Domain] = &[
    // Webmail: before the search brands that host them.
    host("mail.google.com", Webmail, "gmail"),
    host("outlook.live.com", Webmail, "outlook"),
    host("outlook.office.com", Webmail, "outlook"),
    host("outlook.office365.com", Webmail, "outlook"),
    host("outlook.cloud.microsoft", Webmail, "outlook"),
    host("mail.yahoo.com", Webmail, "yahoo_mail"),
    host("mail.yahoo.co.jp", Webmail, "yahoo_mail"),
    host("mail.proton.me", Webmail, "proton"),
    host("mail.protonmail.com", Webmail, "proton"),
    host("gmx.net", Webmail, "gmx"),
    host("gmx.com", Webmail, "gmx"),
    host("gmx.de", Webmail, "gmx"),
    host("web.de", Webmail, "web_de"),
    host("mail.orange.fr", Webmail, "orange"),
    host("messagerie.orange.fr", Webmail, "orange"),
    host("mail.aol.com", Webmail, "aol_mail"),
    host("mail.yandex.ru", Webmail, "yandex_mail"),
    host("e.mail.ru", Webmail, "mail_ru"),
    host("mail.zoho.com", Webmail, "zoho_mail"),
    host("icloud.com", Webmail, "icloud_mail"),
    host("fastmail.com", Webmail, "fastmail"),
    host("tutanota.com", Webmail, "tutanota"),
    host("mail.libero.it", Webmail, "libero"),
    host("webmail.free.fr", Webmail, "free"),
    // AI assistants: before the search engines of the same companies.
    host("chatgpt.com", Ai, "chatgpt"),
    host("chat.openai.com", Ai, "chatgpt"),
    host("perplexity.ai", Ai, "perplexity"),
    host("gemini.google.com", Ai, "gemini"),
    host("bard.google.com", Ai, "gemini"),
    host("claude.ai", Ai, "claude"),
    host("copilot.microsoft.com", Ai, "copilot"),
    path("bing.com", "/chat", Ai, "copilot"),
    host("chat.mistral.ai", Ai, "mistral"),
    host("poe.com", Ai, "poe"),
    host("character.ai", Ai, "character_ai"),
    host("meta.ai", Ai, "meta_ai"),
    host("chat.deepseek.com", Ai, "deepseek"),
    host("you.com", Ai, "you"),
    host("phind.com", Ai, "phind"),
    host("grok.com", Ai, "grok"),
    // Messaging web clients.
    host("web.whatsapp.com", Messaging, "whatsapp"),
    host("wa.me", Messaging, "whatsapp"),
    host("web.telegram.org", Messaging, "telegram"),
    host("t.me", Messaging, "telegram"),
    host("app.slack.com", Messaging, "slack"),
    host("slack.com", Messaging, "slack"),
    host("discord.com", Messaging, "discord"),
    host("discordapp.com", Messaging, "discord"),
    host("teams.microsoft.com", Messaging, "teams"),
    host("teams.live.com", Messaging, "teams"),
    host("teams.cloud.microsoft", Messaging, "teams"),
    host("messenger.com", Messaging, "messenger"),
    host("web.skype.com", Messaging, "skype"),
    host("signal.org", Messaging, "signal"),
    host("chat.google.com", Messaging, "google_chat"),
    host("messages.google.com", Messaging, "google_messages"),
    host("web.wechat.com", Messaging, "wechat"),
    host("wx.qq.com", Messaging, "wechat"),
    // Public social networks.
    host("workplace.com", Social, "workplace"),
    host("facebook.com", Social, "facebook"),
    host("fb.com", Social, "facebook"),
    host("fb.me", Social, "facebook"),
    host("instagram.com", Social, "instagram"),
    host("t.co", Social, "x"),
    host("x.com", Social, "x"),
    host("twitter.com", Social, "x"),
    host("linkedin.com", Social, "linkedin"),
    host("lnkd.in", Social, "linkedin"),
    host("reddit.com", Social, "reddit"),
    host("redd.it", Social, "reddit"),
    host("threads.net", Social, "threads"),
    host("threads.com", Social, "threads"),
    host("bsky.app", Social, "bluesky"),
    host("mastodon.social", Social, "mastodon"),
    host("mastodon.online", Social, "mastodon"),
    host("mstdn.social", Social, "mastodon"),
    host("mas.to", Social, "mastodon"),
    host("fosstodon.org", Social, "mastodon"),
    host("mastodon.world", Social, "mastodon"),
    host("hachyderm.io", Social, "mastodon"),
    host("infosec.exchange", Social, "mastodon"),
    host("chaos.social", Social, "mastodon"),
    host("tumblr.com", Social, "tumblr"),
    // Tumblr's outbound link redirector.
    host("t.umblr.com", Social, "tumblr"),
    host("pinterest.*", Social, "pinterest"),
    host("pin.it", Social, "pinterest"),
    host("tiktok.com", Social, "tiktok"),
    host("youtube.com", Social, "youtube"),
    host("youtu.be", Social, "youtube"),
    host("vk.com", Social, "vk"),
    host("vk.ru", Social, "vk"),
    host("ok.ru", Social, "odnoklassniki"),
    host("news.ycombinator.com", Social, "hacker_news"),
    host("quora.com", Social, "quora"),
    host("snapchat.com", Social, "snapchat"),
    host("weibo.com", Social, "weibo"),
    host("flipboard.com", Social, "flipboard"),
    // Search engines, brands last so the specific rows above win.
    host("google.*", Search, "google"),
    host("bing.com", Search, "bing"),
    host("duckduckgo.com", Search, "duckduckgo"),
    host("search.yahoo.com", Search, "yahoo"),
    host("yahoo.co.jp", Search, "yahoo"),
    host("yandex.*", Search, "yandex"),
    host("ya.ru", Search, "yandex"),
    host("baidu.com", Search, "baidu"),
    host("ecosia.org", Search, "ecosia"),
    host("qwant.com", Search, "qwant"),
    host("search.brave.com", Search, "brave"),
    host("startpage.com", Search, "startpage"),
    host("naver.com", Search, "naver"),
    host("seznam.cz", Search, "seznam"),
    host("sogou.com", Search, "sogou"),
    host("so.com", Search, "360"),
    host("search.aol.com", Search, "aol"),
    host("ask.com", Search, "ask"),
    host("kagi.com", Search, "kagi"),
];

/// Android app referrers (`android-app://PACKAGE`), exact package names.
pub const ANDROID_APPS: &[AndroidApp] = &[
    app("com.google.android.gm", Webmail, "gmail"),
    app("com.microsoft.office.outlook", Webmail, "outlook"),
    app(
        "com.yahoo.mobile.client.android.mail",
        Webmail,
        "yahoo_mail",
    ),
    app("ch.protonmail.android", Webmail, "proton"),
    app(
        "com.samsung.android.email.provider",
        Webmail,
        "samsung_email",
    ),
    app("de.gmx.mobile.android.mail", Webmail, "gmx"),
    app("com.whatsapp", Messaging, "whatsapp"),
    app("com.whatsapp.w4b", Messaging, "whatsapp"),
    app("org.telegram.messenger", Messaging, "telegram"),
    app("org.thoughtcrime.securesms", Messaging, "signal"),
    app("com.facebook.orca", Messaging, "messenger"),
    app("com.tencent.mm", Messaging, "wechat"),
    app("jp.naver.line.android", Messaging, "line"),
    app("com.viber.voip", Messaging, "viber"),
    app("com.Slack", Messaging, "slack"),
    app("com.discord", Messaging, "discord"),
    app("com.microsoft.teams", Messaging, "teams"),
    app("com.google.android.apps.messaging", Messaging, "sms"),
    app("com.samsung.android.messaging", Messaging, "sms"),
    app("com.snapchat.android", Messaging, "snapchat"),
    app("com.facebook.katana", Social, "facebook"),
    app("com.facebook.lite", Social, "facebook"),
    app("com.instagram.android", Social, "instagram"),
    app("com.instagram.barcelona", Social, "threads"),
    app("com.twitter.android", Social, "x"),
    app("com.linkedin.android", Social, "linkedin"),
    app("com.reddit.frontpage", Social, "reddit"),
    app("com.pinterest", Social, "pinterest"),
    app("com.zhiliaoapp.musically", Social, "tiktok"),
    app("com.ss.android.ugc.trill", Social, "tiktok"),
    app("com.google.android.youtube", Social, "youtube"),
    app("xyz.blueskyweb.app", Social, "bluesky"),
    app("org.joinmastodon.android", Social, "mastodon"),
    app("com.vkontakte.android", Social, "vk"),
    app("ru.ok.android", Social, "odnoklassniki"),
    app("com.google.android.googlequicksearchbox", Search, "google"),
    app("com.google.android.apps.searchlite", Search, "google"),
    app("com.microsoft.bing", Search, "bing"),
    app("com.duckduckgo.mobile.android", Search, "duckduckgo"),
    app("com.openai.chatgpt", Ai, "chatgpt"),
    app("ai.perplexity.app.android", Ai, "perplexity"),
    app("com.google.android.apps.bard", Ai, "gemini"),
    app("com.anthropic.claude", Ai, "claude"),
];

/// The first web-host row matching `host` (lowercase) and `path`.
pub fn lookup_host(host: &str, path: &str) -> Option<&'static Domain> {
    let host = host.trim_end_matches('.');
    DOMAINS.iter().find(|row| {
        host_matches(row.pattern, host) && row.path_prefix.is_none_or(|p| path.starts_with(p))
    })
}

/// The first web-host row standing for the source `name` (`whatsapp`,
/// `chatgpt`...), for campaign tags that name a site instead of a host.
pub fn lookup_source_name(name: &str) -> Option<&'static Domain> {
    DOMAINS
        .iter()
        .find(|row| row.source.eq_ignore_ascii_case(name))
}

/// The Android app row of `package`.
pub fn lookup_android_app(package: &str) -> Option<&'static AndroidApp> {
    ANDROID_APPS
        .iter()
        .find(|row| row.package.eq_ignore_ascii_case(package))
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_suffix(".*") {
        // Brand wildcard: the brand label followed by a public suffix,
        // anywhere after subdomains.
        Some(brand) => {
            let labels: Vec<&str> = host.split('.').collect();
            labels
                .iter()
                .position(|label| *label == brand)
                .is_some_and(|at| is_public_suffix(&labels[at + 1..]))
        }
        None => {
            host == pattern
                || host
                    .strip_suffix(pattern)
                    .is_some_and(|rest| rest.ends_with('.'))
        }
    }
}

/// Second-level labels under which country domains register names
/// (`co.uk`, `com.br`, `ne.jp`).
const SECOND_LEVEL_LABELS: &[&str] = &["co", "com", "net", "org", "ac", "ne", "or", "gov", "edu"];

/// Whether `labels` look like a public suffix: one top-level label, or a
/// known second-level label under a two-letter country label.
fn is_public_suffix(labels: &[&str]) -> bool {
    match labels {
        [tld] => !tld.is_empty(),
        [second, country] => SECOND_LEVEL_LABELS.contains(second) && country.len() == 2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn every_web_row_matches_its_own_pattern() {
        for row in DOMAINS {
            let host = row.pattern.replace(".*", ".com");
            let found = lookup_host(&host, row.path_prefix.unwrap_or("/"));
            assert_eq!(
                found,
                Some(row),
                "row {row:?} is shadowed by an earlier row"
            );
        }
    }

    #[test]
    fn every_android_row_matches_its_own_package() {
        for row in ANDROID_APPS {
            assert_eq!(lookup_android_app(row.package), Some(row));
        }
    }

    #[rstest]
    #[case("www.google.com", "/", Some("google"))]
    #[case("www.google.co.uk", "/search", Some("google"))]
    #[case("google.de", "/", Some("google"))]
    #[case("mail.google.com", "/mail/u/0/", Some("gmail"))]
    #[case("gemini.google.com", "/app", Some("gemini"))]
    #[case("www.bing.com", "/search", Some("bing"))]
    #[case("www.bing.com", "/chat", Some("copilot"))]
    #[case("m.facebook.com", "/l.php", Some("facebook"))]
    #[case("lm.facebook.com", "/", Some("facebook"))]
    #[case("t.co", "/abc", Some("x"))]
    #[case("lnkd.in", "/x", Some("linkedin"))]
    #[case("old.reddit.com", "/r/rust", Some("reddit"))]
    #[case("yandex.ru", "/search", Some("yandex"))]
    #[case("outlook.live.com", "/mail/0/", Some("outlook"))]
    #[case("web.whatsapp.com", "/", Some("whatsapp"))]
    #[case("google.example.org", "/", None)]
    #[case("notgoogle.com", "/", None)]
    #[case("fakefacebook.com", "/", None)]
    #[case("facebook.com.evil.example", "/", None)]
    #[case("blog.example.com", "/", None)]
    fn looks_up_hosts(#[case] host: &str, #[case] path: &str, #[case] source: Option<&str>) {
        assert_eq!(lookup_host(host, path).map(|row| row.source), source);
    }
}
