//! The channel corpus: real user agents and referrer shapes, one case per
//! line of `tests/corpus/channels.tsv` (user agents by name from
//! `tests/corpus/user_agents.tsv`), all run through `lumen-enrich explain`'s
//! code path and checked for channel, source, rule, in-app browser, bot and
//! token status. Every failing line is reported, not just the first.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;

use lumen_enrich::classify::Classifier;
use lumen_enrich::enrich::Enricher;
use lumen_enrich::explain;
use lumen_enrich::rules::RULES;
use lumen_enrich::tokens::TokenStore;
use lumen_schemas::ShareToken;
use serde_json::{Value, json};

const CASES: &str = include_str!("../corpus/channels.tsv");
const USER_AGENTS: &str = include_str!("../corpus/user_agents.tsv");
/// The columns of `channels.tsv`, its first line.
const COLUMNS: [&str; 10] = [
    "ua", "url", "referrer", "token", "webview", "channel", "source", "rule", "in_app", "bot",
];
/// Fewer cases than this means the file was truncated.
const MIN_CASES: usize = 220;
/// A landing `url` that is a path is on this origin.
const SITE: &str = "https://www.dailyplanet.example";
const SITE_ID: &str = "daily-planet";
/// Every visit's ingest clock; its tokens were minted an hour before.
const VISIT_MS: i64 = 1_763_442_000_000;
const HOUR_MS: i64 = 3_600_000;

/// One line of `channels.tsv`; `-` stands for none.
struct Case<'a> {
    line: usize,
    columns: [&'a str; 10],
}

impl<'a> Case<'a> {
    fn get(&self, column: &str) -> Option<&'a str> {
        let at = COLUMNS.iter().position(|c| *c == column)?;
        Some(self.columns[at]).filter(|value| *value != "-")
    }
}

/// The landing tokens a case may carry, by the `token` column's value,
/// with the `token_status` each must resolve to.
struct Tokens {
    explicit: String,
    address_bar: String,
}

impl Tokens {
    fn new() -> Self {
        let minted = VISIT_MS - HOUR_MS;
        Self {
            explicit: ShareToken::new(minted, [1, 2, 3, 4, 5, 6, 7]).encode(),
            address_bar: ShareToken::new(minted, [7, 6, 5, 4, 3, 2, 1]).encode(),
        }
    }

    /// The share record that makes `explicit` an explicit share.
    fn shares(&self) -> String {
        json!({
            "token": self.explicit,
            "site_id": SITE_ID,
            "event_id": "corpus-share",
            "shared_at": VISIT_MS - HOUR_MS,
            "share_method": "button",
            "share_target": "whatsapp",
            "parent_token": null,
            "sharer_visitor_id": "corpus-sharer",
            "url": format!("{SITE}/news/2026/solar-eclipse-over-metropolis"),
        })
        .to_string()
    }

    /// `(landing token, expected token_status)` of a `token` column value.
    fn landing(&self, kind: Option<&str>) -> Result<(Option<String>, &'static str), String> {
        let forged = || {
            // The last character holds the check byte's low bits.
            let mut token = self.address_bar.clone();
            let last = if token.ends_with('A') { "B" } else { "A" };
            token.replace_range(token.len() - 1.., last);
            token
        };
        Ok(match kind {
            None => (None, "absent"),
            Some("explicit") => (Some(self.explicit.clone()), "explicit"),
            Some("address_bar") => (Some(self.address_bar.clone()), "address_bar"),
            Some("forged") => (Some(forged()), "invalid"),
            Some("future") => (
                Some(ShareToken::new(VISIT_MS + 24 * HOUR_MS, [9; 7]).encode()),
                "invalid",
            ),
            Some("malformed") => (Some("not-a-share-token".to_owned()), "invalid"),
            Some(other) => return Err(format!("unknown token kind `{other}`")),
        })
    }
}

fn user_agents() -> HashMap<&'static str, &'static str> {
    let mut table = HashMap::new();
    for (index, line) in USER_AGENTS.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, user_agent) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("user_agents.tsv:{}: no tab", index + 1));
        assert!(
            table.insert(name, user_agent).is_none(),
            "user_agents.tsv:{}: `{name}` defined twice",
            index + 1
        );
    }
    table
}

/// The cases of `channels.tsv`, and the lines that are not cases.
fn cases() -> (Vec<Case<'static>>, Vec<String>) {
    let mut lines = CASES.lines().enumerate();
    let header = lines.next().map(|(_, line)| line);
    assert_eq!(
        header,
        Some(COLUMNS.join("\t").as_str()),
        "channels.tsv header"
    );
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in lines {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match <[&str; 10]>::try_from(fields) {
            Ok(columns) => cases.push(Case {
                line: index + 1,
                columns,
            }),
            Err(fields) => errors.push(format!(
                "channels.tsv:{}: {} columns, expected {}",
                index + 1,
                fields.len(),
                COLUMNS.len()
            )),
        }
    }
    (cases, errors)
}

/// An input line of `explain` for `case`.
fn input(
    case: &Case<'_>,
    user_agents: &HashMap<&str, &str>,
    tokens: &Tokens,
) -> Result<(Value, &'static str), String> {
    let alias = case.columns[0];
    let user_agent = user_agents
        .get(alias)
        .ok_or_else(|| format!("unknown user agent `{alias}`"))?;
    let (landing_token, status) = tokens.landing(case.get("token"))?;
    let url = match case.columns[1] {
        path if path.starts_with('/') => format!("{SITE}{path}"),
        url if url.starts_with("https://") || url.starts_with("http://") => url.to_owned(),
        other => return Err(format!("url `{other}` is neither a path nor absolute")),
    };
    let event = json!({
        "event_id": format!("corpus-{}", case.line),
        "site_id": SITE_ID,
        "kind": "pageview",
        "url": url,
        "referrer": case.get("referrer"),
        "user_agent": user_agent,
        "received_at": VISIT_MS,
        "landing_token": landing_token,
        "webview": case.get("webview"),
    });
    Ok((event, status))
}

/// What differs between `enriched` and the case's expectations.
fn mismatches(case: &Case<'_>, enriched: &Value, token_status: &str) -> Vec<String> {
    let expected = [
        ("channel", case.get("channel")),
        ("channel_source", case.get("source")),
        ("rule", case.get("rule")),
        ("in_app", case.get("in_app")),
        ("bot_name", case.get("bot")),
        ("token_status", Some(token_status)),
    ];
    let mut found: Vec<String> = expected
        .into_iter()
        .filter(|(field, want)| enriched[field].as_str() != *want)
        .map(|(field, want)| {
            format!(
                "{field} {} (expected {})",
                enriched[field],
                want.unwrap_or("-")
            )
        })
        .collect();
    if enriched["is_bot"].as_bool() != Some(case.get("bot").is_some()) {
        found.push(format!("is_bot {}", enriched["is_bot"]));
    }
    found
}

#[test]
fn every_corpus_case_classifies_as_expected() {
    let user_agents = user_agents();
    let tokens = Tokens::new();
    let (cases, mut failures) = cases();
    let mut runnable = Vec::new();
    let mut input_lines = String::new();
    for case in &cases {
        match input(case, &user_agents, &tokens) {
            Ok((event, status)) => {
                input_lines.push_str(&event.to_string());
                input_lines.push('\n');
                runnable.push((case, status));
            }
            Err(error) => failures.push(format!("channels.tsv:{}: {error}", case.line)),
        }
    }

    let mut enricher = Enricher::new(
        Classifier::default(),
        NonZeroUsize::MIN,
        TokenStore::new(i64::MAX / 4, 1 << 20),
    );
    explain::load_shares(&mut enricher, tokens.shares().as_bytes()).expect("shares");
    let mut output = Vec::new();
    explain::explain(&mut enricher, input_lines.as_bytes(), &mut output).expect("explain");
    let output = String::from_utf8(output).expect("utf-8");
    let outputs: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(outputs.len(), runnable.len(), "one output line per case");

    for ((case, status), enriched) in runnable.iter().zip(&outputs) {
        let found = mismatches(case, enriched, status);
        if !found.is_empty() {
            failures.push(format!(
                "channels.tsv:{}: [{}]\n    {}",
                case.line,
                case.columns[..5].join(" | "),
                found.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus lines fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_covers_every_rule_and_user_agent() {
    let (cases, _) = cases();
    assert!(
        cases.len() >= MIN_CASES,
        "{} cases, expected at least {MIN_CASES}",
        cases.len()
    );
    let rules: BTreeSet<&str> = cases.iter().filter_map(|c| c.get("rule")).collect();
    let missing: Vec<&str> = RULES
        .iter()
        .map(|rule| rule.id)
        .filter(|id| !rules.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a corpus case: {missing:?}"
    );
    let used: BTreeSet<&str> = cases.iter().map(|c| c.columns[0]).collect();
    let mut unused: Vec<&str> = user_agents()
        .into_keys()
        .filter(|name| !used.contains(name))
        .collect();
    unused.sort_unstable();
    assert!(unused.is_empty(), "user agents without a case: {unused:?}");
}
