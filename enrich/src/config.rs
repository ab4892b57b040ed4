//! Flags and `LUMEN_*` variables of `lumen-enrich`, validated at start-up.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lumen_runtime::{AdminConfig, KafkaConfig, LogConfig, TopicsConfig};

use crate::classify::DEFAULT_ARTICLE_PATH;
use crate::error::{Error, Result};

/// Admin port from DESIGN.md.
pub const DEFAULT_ADMIN_PORT: u16 = 9102;

/// Lumen enrich: token resolution, channel inference and user-agent parsing: lumen.raw in, lumen.enriched out.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-enrich", version)]
pub struct Config {
    /// `explain` runs the classifier on JSON lines; without a subcommand
    /// the service runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// Topic names.
    #[command(flatten)]
    pub topics: TopicsConfig,
    /// Admin HTTP server.
    #[command(flatten)]
    pub admin: AdminConfig,
    /// Logging.
    #[command(flatten)]
    pub log: LogConfig,
    /// Pipeline tuning.
    #[command(flatten)]
    pub pipeline: PipelineConfig,
    /// Classification.
    #[command(flatten)]
    pub classify: ClassifyConfig,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Classify raw events read as JSON lines on stdin; write each enriched
    /// event as a JSON line on stdout, with the `rule` that decided. No Kafka.
    Explain(ExplainConfig),
}

/// Flags of `lumen-enrich explain`.
#[derive(Debug, Clone, Default, Args)]
pub struct ExplainConfig {
    /// Share records (JSON lines, fields of `lumen.shares`) to load into the
    /// token store first, so tokens resolve as explicit shares. Share events
    /// in the input are recorded as well.
    #[arg(long = "shares")]
    pub shares: Option<PathBuf>,
}

/// How the Kafka pipeline batches, commits and bounds its state.
#[derive(Debug, Clone, Args)]
pub struct PipelineConfig {
    /// Consumer group of the enrich instances.
    #[arg(
        long = "group-id",
        env = "LUMEN_ENRICH_GROUP_ID",
        default_value = "lumen-enrich"
    )]
    pub group_id: String,

    /// `transactional.id` of this instance: unique per instance and stable
    /// across its restarts (e.g. the pod name), so a restarted instance
    /// fences its predecessor. Default: `lumen-enrich-$HOSTNAME`.
    #[arg(long = "transactional-id", env = "LUMEN_ENRICH_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,

    /// Most raw records per transaction. A transaction costs tens of ms
    /// whatever its size, so small batches cap throughput (about 8 000
    /// events/s at 1000 on the bench machine); light traffic commits on
    /// `--batch-max-wait-ms` long before the batch fills.
    #[arg(
        long = "batch-max-events",
        env = "LUMEN_ENRICH_BATCH_MAX_EVENTS",
        default_value_t = 5000
    )]
    pub batch_max_events: usize,

    /// Longest a batch waits for more records before it commits, in ms.
    #[arg(
        long = "batch-max-wait-ms",
        env = "LUMEN_ENRICH_BATCH_MAX_WAIT_MS",
        default_value_t = 200
    )]
    pub batch_max_wait_ms: u64,

    /// Bound of each blocking transactional call, in ms.
    #[arg(
        long = "transaction-timeout-ms",
        env = "LUMEN_ENRICH_TRANSACTION_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub transaction_timeout_ms: u64,

    /// How long explicit shares stay in the token store, in days.
    #[arg(
        long = "token-ttl-days",
        env = "LUMEN_ENRICH_TOKEN_TTL_DAYS",
        default_value_t = 30
    )]
    pub token_ttl_days: u32,

    /// Memory cap of the token store per partition, in estimated bytes;
    /// past it the oldest shares leave first (they then resolve as
    /// `address_bar`). Default 256 MiB.
    #[arg(
        long = "token-store-max-bytes",
        env = "LUMEN_ENRICH_TOKEN_STORE_MAX_BYTES",
        default_value_t = 256 * 1024 * 1024
    )]
    pub token_store_max_bytes: usize,

    /// Recent event ids kept per partition to drop tracker retries.
    #[arg(
        long = "dedupe-window-events",
        env = "LUMEN_ENRICH_DEDUPE_WINDOW_EVENTS",
        default_value_t = 100_000
    )]
    pub dedupe_window_events: usize,

    /// Distinct user agents kept parsed in the cache.
    #[arg(
        long = "ua-cache-entries",
        env = "LUMEN_ENRICH_UA_CACHE_ENTRIES",
        default_value = "20000"
    )]
    pub ua_cache_entries: NonZeroUsize,

    /// Longest restore of one partition's state after an assignment, in ms.
    #[arg(
        long = "restore-timeout-ms",
        env = "LUMEN_ENRICH_RESTORE_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub restore_timeout_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            group_id: "lumen-enrich".to_owned(),
            transactional_id: None,
            batch_max_events: 5000,
            batch_max_wait_ms: 200,
            transaction_timeout_ms: 30_000,
            token_ttl_days: 30,
            token_store_max_bytes: 256 * 1024 * 1024,
            dedupe_window_events: 100_000,
            ua_cache_entries: NonZeroUsize::new(20_000).unwrap_or(NonZeroUsize::MIN),
            restore_timeout_ms: 120_000,
        }
    }
}

impl PipelineConfig {
    /// The configured `transactional.id`, or `lumen-enrich-$HOSTNAME`.
    pub fn transactional_id(&self) -> String {
        self.transactional_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
            format!("lumen-enrich-{host}")
        })
    }

    /// The token TTL in ms.
    pub fn token_ttl_ms(&self) -> i64 {
        i64::from(self.token_ttl_days) * 86_400_000
    }
}

/// How pages are classified.
#[derive(Debug, Clone, Args)]
pub struct ClassifyConfig {
    /// Regex (searched in the landing path) of article-like pages: a visit
    /// with no referrer, token or campaign landing on one counts as dark
    /// social (probable); other paths count as direct.
    #[arg(long = "article-path-regex", env = "LUMEN_ENRICH_ARTICLE_PATH_REGEX", default_value = DEFAULT_ARTICLE_PATH)]
    pub article_path_regex: String,

    /// A site's own article regex as SITE_ID=REGEX; repeat for several (in
    /// the environment, separate with `;`).
    #[arg(long = "site-article-path-regex", env = "LUMEN_ENRICH_SITE_ARTICLE_PATH_REGEX", value_parser = parse_site_regex, value_delimiter = ';')]
    pub site_article_path_regex: Vec<(String, String)>,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            article_path_regex: DEFAULT_ARTICLE_PATH.to_owned(),
            site_article_path_regex: Vec::new(),
        }
    }
}

fn parse_site_regex(raw: &str) -> std::result::Result<(String, String), String> {
    match raw.split_once('=') {
        Some((site, regex)) if !site.trim().is_empty() => {
            Ok((site.trim().to_owned(), regex.to_owned()))
        }
        _ => Err(format!("expected SITE_ID=REGEX, got `{raw}`")),
    }
}

impl Config {
    /// A config with every default, for tests and embedding.
    pub fn with_defaults() -> Self {
        Self {
            command: None,
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            admin: AdminConfig { addr: None },
            log: LogConfig::default(),
            pipeline: PipelineConfig::default(),
            classify: ClassifyConfig::default(),
        }
    }

    /// Refuses combinations the service cannot run with, saying what to fix.
    pub fn validate(&self) -> Result<()> {
        let pipeline = &self.pipeline;
        let checks = [
            (
                pipeline.batch_max_events == 0,
                "--batch-max-events must be at least 1",
            ),
            (
                pipeline.batch_max_wait_ms == 0,
                "--batch-max-wait-ms must be at least 1",
            ),
            (
                pipeline.transaction_timeout_ms < 1000,
                "--transaction-timeout-ms must be at least 1000",
            ),
            (
                pipeline.token_ttl_days == 0,
                "--token-ttl-days must be at least 1",
            ),
            (
                pipeline.token_store_max_bytes < 4096,
                "--token-store-max-bytes must be at least 4096",
            ),
            (
                pipeline.dedupe_window_events == 0,
                "--dedupe-window-events must be at least 1",
            ),
            (
                pipeline.restore_timeout_ms == 0,
                "--restore-timeout-ms must be at least 1",
            ),
            (
                pipeline.group_id.trim().is_empty(),
                "--group-id must not be empty",
            ),
        ];
        if let Some((_, message)) = checks.iter().find(|(failed, _)| *failed) {
            return Err(Error::Config((*message).to_owned()));
        }
        let topics = [
            &self.topics.raw,
            &self.topics.enriched,
            &self.topics.shares,
            &self.topics.dlq,
        ];
        if topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::Config("topic names must not be empty".to_owned()));
        }
        if self.topics.raw == self.topics.enriched {
            return Err(Error::Config(
                "--topic-raw and --topic-enriched must differ".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_flags() {
        let parsed = Config::try_parse_from(["lumen-enrich"]).expect("flags");
        parsed.validate().expect("valid");
        let defaults = Config::with_defaults();
        assert_eq!(
            parsed.pipeline.batch_max_events,
            defaults.pipeline.batch_max_events
        );
        assert_eq!(
            parsed.pipeline.ua_cache_entries,
            defaults.pipeline.ua_cache_entries
        );
        assert_eq!(
            parsed.classify.article_path_regex,
            defaults.classify.article_path_regex
        );
        assert_eq!(defaults.pipeline.token_ttl_ms(), 30 * 86_400_000);
    }

    #[test]
    fn explain_subcommand_and_site_patterns_parse() {
        let parsed = Config::try_parse_from([
            "lumen-enrich",
            "--site-article-path-regex",
            "daily-planet=^/p/\\d+$",
            "explain",
            "--shares",
            "shares.jsonl",
        ])
        .expect("flags");
        assert!(matches!(parsed.command, Some(Command::Explain(_))));
        assert_eq!(parsed.classify.site_article_path_regex[0].0, "daily-planet");
    }

    #[rstest]
    #[case::batch(|c: &mut Config| c.pipeline.batch_max_events = 0, "--batch-max-events")]
    #[case::ttl(|c: &mut Config| c.pipeline.token_ttl_days = 0, "--token-ttl-days")]
    #[case::same_topic(|c: &mut Config| c.topics.enriched = c.topics.raw.clone(), "--topic-raw")]
    fn invalid_configs_say_what_to_fix(#[case] change: fn(&mut Config), #[case] flag: &str) {
        let mut config = Config::with_defaults();
        change(&mut config);
        let error = config.validate().expect_err("invalid");
        assert!(error.to_string().contains(flag), "{error}");
    }
}
