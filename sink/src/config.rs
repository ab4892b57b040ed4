//! Flags and `LUMEN_*` variables of `lumen-sink`, and their validation at
//! start-up. Nothing here connects to anything.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lumen_runtime::{AdminConfig, KafkaConfig, LogConfig, TopicsConfig};

use crate::error::{Error, Result};

/// Admin port from DESIGN.md.
pub const DEFAULT_ADMIN_PORT: u16 = 9103;

/// Lumen sink: batched, exactly-once writes of lumen.enriched into ClickHouse.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-sink", version)]
pub struct Config {
    /// What to do; without a subcommand the sink runs until SIGTERM.
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
    /// ClickHouse connection and model.
    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,
    /// Batching, retries and shutdown.
    #[command(flatten)]
    pub batch: BatchConfig,
    /// Kafka consumer group of the sink; every instance of one deployment
    /// shares it.
    #[arg(
        long = "consumer-group",
        env = "LUMEN_SINK_CONSUMER_GROUP",
        default_value = "lumen-sink"
    )]
    pub consumer_group: String,
    /// Recent event ids kept per partition: a record whose event id is
    /// among them is not written again. Every copy of an event lands in the
    /// same partition; copies come from a Kafka transaction aborted without
    /// its marker reaching a partition (seen once in ~20 runs of a 60 s
    /// Kafka freeze), never from the pipeline's own retries. Kept as 16-byte
    /// digests in two generations of this many (the last this many are
    /// always known): about 1 MiB per partition at the default.
    #[arg(
        long = "dedupe-window-events",
        env = "LUMEN_SINK_DEDUPE_WINDOW_EVENTS",
        default_value_t = 20_000
    )]
    pub dedupe_window_events: usize,
}

/// Subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Apply the ClickHouse migrations and the retention, then exit.
    Migrate,
}

/// Where ClickHouse is and how long raw events live there.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP interface.
    #[arg(
        long = "clickhouse-url",
        env = "LUMEN_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub url: String,
    /// Database holding the Lumen model (created by the migrations).
    #[arg(
        long = "clickhouse-database",
        env = "LUMEN_CLICKHOUSE_DATABASE",
        default_value = "lumen"
    )]
    pub database: String,
    /// ClickHouse user.
    #[arg(
        long = "clickhouse-user",
        env = "LUMEN_CLICKHOUSE_USER",
        default_value = "default"
    )]
    pub user: String,
    /// ClickHouse password (prefer the environment variable to the flag).
    #[arg(
        long = "clickhouse-password",
        env = "LUMEN_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// Days raw events (`events`, `minted_tokens`) are kept; aggregates are kept
    /// for ever. Applied at every start-up.
    #[arg(
        long = "events-ttl-days",
        env = "LUMEN_EVENTS_TTL_DAYS",
        default_value_t = 395
    )]
    pub events_ttl_days: u32,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".to_owned(),
            database: "lumen".to_owned(),
            user: "default".to_owned(),
            password: String::new(),
            events_ttl_days: 395,
        }
    }
}

impl ClickHouseConfig {
    /// A client for the configured server and database, LZ4-compressed,
    /// writing plain RowBinary: the crate's per-row validation against the
    /// table (RowBinaryWithNamesAndTypes) took ~10% of the sink's CPU, and
    /// the row type is checked against the migrated table by the
    /// integration test `the_row_type_matches_the_events_table` instead.
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            .with_database(&self.database)
            .with_compression(clickhouse::Compression::Lz4)
            .with_validation(false)
    }
}

/// Batch bounds, retry pacing and shutdown budget.
#[derive(Debug, Clone, Args)]
pub struct BatchConfig {
    /// A partition's batch is inserted when it holds this many Kafka records.
    /// Every insert makes a part in `events` and in each view's table: at
    /// 25 000 rows ClickHouse spent 17–19 CPU-seconds per million rows,
    /// against 26–29 at 10 000 (`make bench-sink`).
    #[arg(
        long = "batch-max-rows",
        env = "LUMEN_SINK_BATCH_MAX_ROWS",
        default_value_t = 25_000
    )]
    pub max_rows: usize,
    /// ... or this many payload bytes (a 25 000-row batch of ~300-byte
    /// records is 7.5 MB; this bound cuts batches of unusually large ones).
    #[arg(
        long = "batch-max-bytes",
        env = "LUMEN_SINK_BATCH_MAX_BYTES",
        default_value_t = 16 * 1024 * 1024
    )]
    pub max_bytes: usize,
    /// Records read and not yet inserted, across all partitions, above which
    /// reading stops until inserts catch up: with `--max-buffered-bytes`,
    /// the sink's memory bound (records are held as their Avro bytes and
    /// keys, about 370 bytes each in RSS). At least `--batch-max-rows`;
    /// twice it per partition keeps every partition's next batch filling
    /// while one is inserted, which the default does for three partitions
    /// (peak RSS 85–92 MiB draining a backlog, `make bench-sink`).
    #[arg(
        long = "max-buffered-rows",
        env = "LUMEN_SINK_MAX_BUFFERED_ROWS",
        default_value_t = 150_000
    )]
    pub max_buffered_rows: usize,
    /// ... or their payload bytes reach this: the memory bound whatever the
    /// records' size (URLs and referrers may be 4 KiB each). The default
    /// stays above the rows budget's bytes for ~300-byte records (45 MB).
    #[arg(
        long = "max-buffered-bytes",
        env = "LUMEN_SINK_MAX_BUFFERED_BYTES",
        default_value_t = 48 * 1024 * 1024
    )]
    pub max_buffered_bytes: usize,
    /// ... or when its first record has waited this long, in milliseconds.
    #[arg(
        long = "batch-max-age-ms",
        env = "LUMEN_SINK_BATCH_MAX_AGE_MS",
        default_value_t = 1_000
    )]
    pub max_age_ms: u64,
    /// First pause after a failed insert, in milliseconds; doubles per retry,
    /// with jitter.
    #[arg(
        long = "retry-initial-ms",
        env = "LUMEN_SINK_RETRY_INITIAL_MS",
        default_value_t = 100
    )]
    pub retry_initial_ms: u64,
    /// Longest pause between retries, in milliseconds. Retries never stop:
    /// a batch is never dropped.
    #[arg(
        long = "retry-max-ms",
        env = "LUMEN_SINK_RETRY_MAX_MS",
        default_value_t = 10_000
    )]
    pub retry_max_ms: u64,
    /// Longest an insert may take before it counts as failed, in milliseconds.
    #[arg(
        long = "insert-timeout-ms",
        env = "LUMEN_SINK_INSERT_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub insert_timeout_ms: u64,
    /// On SIGTERM, how long to keep inserting and committing what was read,
    /// in milliseconds; what is left is read again by the next owner.
    #[arg(
        long = "shutdown-timeout-ms",
        env = "LUMEN_SINK_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 20_000
    )]
    pub shutdown_timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 25_000,
            max_bytes: 16 * 1024 * 1024,
            max_buffered_rows: 150_000,
            max_buffered_bytes: 48 * 1024 * 1024,
            max_age_ms: 1_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            insert_timeout_ms: 30_000,
            shutdown_timeout_ms: 20_000,
        }
    }
}

impl BatchConfig {
    /// See [`BatchConfig::max_age_ms`].
    pub fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }
    /// See [`BatchConfig::insert_timeout_ms`].
    pub fn insert_timeout(&self) -> Duration {
        Duration::from_millis(self.insert_timeout_ms)
    }
    /// See [`BatchConfig::shutdown_timeout_ms`].
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            command: None,
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            admin: AdminConfig { addr: None },
            log: LogConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            batch: BatchConfig::default(),
            consumer_group: "lumen-sink".to_owned(),
            dedupe_window_events: 20_000,
        }
    }
}

impl Config {
    /// Refuses settings that cannot work, saying what to fix.
    pub fn validate(&self) -> Result<()> {
        let batch = &self.batch;
        let checks: [(bool, &str); 12] = [
            (batch.max_rows > 0, "--batch-max-rows must be at least 1"),
            (
                batch.max_buffered_rows >= batch.max_rows,
                "--max-buffered-rows must be at least --batch-max-rows",
            ),
            (batch.max_bytes > 0, "--batch-max-bytes must be at least 1"),
            (
                batch.max_buffered_bytes > 0,
                "--max-buffered-bytes must be at least 1",
            ),
            (
                batch.max_age_ms > 0,
                "--batch-max-age-ms must be at least 1",
            ),
            (
                batch.retry_initial_ms > 0,
                "--retry-initial-ms must be at least 1",
            ),
            (
                batch.retry_max_ms >= batch.retry_initial_ms,
                "--retry-max-ms must be at least --retry-initial-ms",
            ),
            (
                batch.insert_timeout_ms > 0,
                "--insert-timeout-ms must be at least 1",
            ),
            (
                self.clickhouse.events_ttl_days > 0,
                "--events-ttl-days must be at least 1",
            ),
            (
                self.clickhouse.url.starts_with("http://")
                    || self.clickhouse.url.starts_with("https://"),
                "--clickhouse-url must start with http:// or https://",
            ),
            (
                !self.consumer_group.trim().is_empty(),
                "--consumer-group must not be empty",
            ),
            (
                self.dedupe_window_events > 0,
                "--dedupe-window-events must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(Error::Config((*message).to_owned())),
            None => lumen_schemas::migrate::validate_database(&self.clickhouse.database)
                .map_err(|e| Error::Config(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_flags() {
        let parsed = Config::try_parse_from(["lumen-sink"]).expect("no flags");
        parsed.validate().expect("defaults validate");
        let default = Config::default();
        assert_eq!(parsed.batch.max_rows, default.batch.max_rows);
        assert_eq!(
            parsed.batch.max_buffered_rows,
            default.batch.max_buffered_rows
        );
        assert_eq!(
            parsed.batch.max_buffered_bytes,
            default.batch.max_buffered_bytes
        );
        assert_eq!(parsed.batch.max_bytes, default.batch.max_bytes);
        assert_eq!(parsed.batch.max_age_ms, default.batch.max_age_ms);
        // The one default an operator's environment may override.
        let url = std::env::var("LUMEN_CLICKHOUSE_URL").unwrap_or(default.clickhouse.url);
        assert_eq!(parsed.clickhouse.url, url);
        assert_eq!(parsed.clickhouse.database, default.clickhouse.database);
        assert_eq!(parsed.consumer_group, default.consumer_group);
        assert_eq!(parsed.command, None);
    }

    #[test]
    fn migrate_is_a_subcommand() {
        let parsed = Config::try_parse_from(["lumen-sink", "migrate"]).expect("migrate");
        assert_eq!(parsed.command, Some(Command::Migrate));
    }

    #[rstest]
    #[case(&["--batch-max-rows", "0"], "--batch-max-rows")]
    #[case(&["--batch-max-rows", "500", "--max-buffered-rows", "499"], "--max-buffered-rows")]
    #[case(&["--batch-max-age-ms", "0"], "--batch-max-age-ms")]
    #[case(&["--dedupe-window-events", "0"], "--dedupe-window-events")]
    #[case(&["--retry-initial-ms", "500", "--retry-max-ms", "100"], "--retry-max-ms")]
    #[case(&["--events-ttl-days", "0"], "--events-ttl-days")]
    #[case(&["--clickhouse-url", "127.0.0.1:8123"], "--clickhouse-url")]
    #[case(&["--clickhouse-database", "lumen-prod"], "lumen-prod")]
    fn refuses_unusable_settings(#[case] flags: &[&str], #[case] mentions: &str) {
        let args = std::iter::once("lumen-sink").chain(flags.iter().copied());
        let config = Config::try_parse_from(args).expect("parses");
        let message = config.validate().expect_err("refused").to_string();
        assert!(message.contains(mentions), "{message}");
    }
}
