//! `lumen-enrich explain`: the classifier on the command line, no Kafka.
//! Reads raw events as JSON lines (the JSON ingest accepts, plus
//! `user_agent`, optional `site_host` and `received_at`), writes per line
//! the enriched event as JSON, whose `rule` names the rule that decided.
//! A line that is not a valid event gets `{"line": N, "error": "..."}`
//! instead, so output lines stay aligned with input lines.
//!
//! There is no token store behind it but what it is given: share records
//! from `--shares` and the share events of the input itself. A well-formed
//! token found in neither resolves as `address_bar`.

use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use lumen_schemas::{EventKind, RawEvent, ShareMethod, ShareRecord};
use serde::Deserialize;

use crate::enrich::Enricher;
use crate::error::{Error, Result};

/// The one partition explain's token store uses.
const PARTITION: i32 = 0;

/// One input line.
#[derive(Debug, Deserialize)]
struct ExplainEvent {
    #[serde(default)]
    event_id: Option<String>,
    site_id: String,
    kind: EventKind,
    url: String,
    #[serde(default)]
    referrer: Option<String>,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    visitor_id: Option<String>,
    #[serde(default)]
    received_at: Option<i64>,
    #[serde(default)]
    sent_at: Option<i64>,
    #[serde(default)]
    site_host: Option<String>,
    #[serde(default)]
    minted_token: Option<String>,
    #[serde(default)]
    landing_token: Option<String>,
    #[serde(default)]
    webview: Option<String>,
    #[serde(default)]
    share_token: Option<String>,
    #[serde(default)]
    share_method: Option<ShareMethod>,
    #[serde(default)]
    share_target: Option<String>,
    #[serde(default)]
    parent_token: Option<String>,
}

impl ExplainEvent {
    fn into_raw(self, line: usize, now_ms: i64) -> (RawEvent, Option<String>) {
        let raw = RawEvent {
            event_id: self.event_id.unwrap_or_else(|| format!("explain-{line}")),
            site_id: self.site_id,
            kind: self.kind,
            received_at: self.received_at.unwrap_or(now_ms),
            sent_at: self.sent_at,
            url: self.url,
            referrer: self.referrer,
            user_agent: self.user_agent,
            visitor_id: self.visitor_id.unwrap_or_default(),
            minted_token: self.minted_token,
            landing_token: self.landing_token,
            webview: self.webview,
            share_token: self.share_token,
            share_method: self.share_method,
            share_target: self.share_target,
            parent_token: self.parent_token,
        };
        (raw, self.site_host)
    }
}

/// Loads share records (JSON lines) into the token store.
pub fn load_shares(enricher: &mut Enricher, shares: impl BufRead) -> Result<usize> {
    let now = now_ms();
    let mut loaded = 0;
    for (index, line) in shares.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: ShareRecord = serde_json::from_str(&line).map_err(|source| Error::Json {
            line: index + 1,
            source,
        })?;
        enricher.tokens().insert(PARTITION, record, now);
        loaded += 1;
    }
    Ok(loaded)
}

/// Classifies every line of `input` onto `output`.
pub fn explain(enricher: &mut Enricher, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let now = now_ms();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let enriched = serde_json::from_str::<ExplainEvent>(&line)
            .map_err(|source| Error::Json {
                line: number,
                source,
            })
            .and_then(|event| {
                let (raw, site_host) = event.into_raw(number, now);
                enricher.enrich(PARTITION, raw, site_host.as_deref())
            });
        let json = match enriched {
            Ok(enriched) => serde_json::to_string(&enriched.event),
            Err(error) => serde_json::to_string(&serde_json::json!({
                "line": number,
                "error": error.to_string(),
                "reason": error.reason(),
            })),
        }
        .map_err(|source| Error::Json {
            line: number,
            source,
        })?;
        writeln!(output, "{json}")?;
    }
    output.flush()?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use serde_json::Value;

    use super::*;
    use crate::classify::Classifier;
    use crate::tokens::TokenStore;

    const TOKEN: &str = "AcB3bAEjRWeJq83Q";

    fn enricher() -> Enricher {
        Enricher::new(
            Classifier::default(),
            NonZeroUsize::MIN,
            TokenStore::new(i64::MAX / 4, 1 << 20),
        )
    }

    fn run(enricher: &mut Enricher, input: &str) -> Vec<Value> {
        let mut output = Vec::new();
        explain(enricher, input.as_bytes(), &mut output).expect("explain");
        String::from_utf8(output)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect()
    }

    #[test]
    fn explains_each_line_with_its_rule() {
        let input = [
            r#"{"site_id":"dp","kind":"pageview","url":"https://dp.example/news/2026/solar-eclipse","user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/MessengerForiOS;FBAV/455.0]"}"#,
            "",
            r#"{"site_id":"dp","kind":"pageview","url":"https://dp.example/","referrer":"https://dp.example/a","site_host":"dp.example"}"#,
            "not json",
            r#"{"site_id":"dp","kind":"pageview","url":"/a","referrer":"https://blog.example/x","site_host":"blog.example"}"#,
        ]
        .join("\n");
        let lines = run(&mut enricher(), &input);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["rule"], "in_app.messaging");
        assert_eq!(lines[0]["channel"], "dark_social");
        assert_eq!(lines[0]["in_app"], "messenger");
        assert_eq!(lines[1]["rule"], "internal");
        assert_eq!(lines[2]["line"], 4);
        assert_eq!(lines[2]["reason"], "json");
        assert_eq!(
            lines[3]["rule"], "internal",
            "site_host decides what is internal"
        );
    }

    #[test]
    fn resolves_tokens_from_shares_file_and_from_input_shares() {
        let mut enricher = enricher();
        let minted_ms = 1_763_442_000_000_i64;
        let share = format!(
            r#"{{"token":"{TOKEN}","site_id":"dp","event_id":"s1","shared_at":{minted_ms},"share_method":"button","share_target":"whatsapp","parent_token":null,"sharer_visitor_id":"v9","url":"https://dp.example/a"}}"#
        );
        assert_eq!(
            load_shares(&mut enricher, share.as_bytes()).expect("load"),
            1
        );
        let visit = format!(
            r#"{{"site_id":"dp","kind":"pageview","url":"https://dp.example/a","landing_token":"{TOKEN}","received_at":{}}}"#,
            minted_ms + 90_000
        );
        let lines = run(&mut enricher, &visit);
        assert_eq!(lines[0]["token_status"], "explicit");
        assert_eq!(lines[0]["landing_share_target"], "whatsapp");
        assert_eq!(lines[0]["share_age_seconds"], 90);
        assert_eq!(lines[0]["rule"], "token.private");

        let mut fresh = self::enricher();
        let lines = run(&mut fresh, &visit);
        assert_eq!(lines[0]["token_status"], "address_bar");
        assert_eq!(lines[0]["landing_share_method"], "address_bar");
    }
}
