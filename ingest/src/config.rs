//! Flags and `LUMEN_*` variables of `lumen-ingest`, their defaults and the
//! start-up validation that refuses unusable combinations. Nothing here reads
//! files or opens sockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use ipnet::IpNet;
use lumen_runtime::{AdminConfig, KafkaConfig, LogConfig, TopicsConfig};

use crate::error::Error;

/// Admin port from DESIGN.md.
pub const DEFAULT_ADMIN_PORT: u16 = 9101;
/// Public port from DESIGN.md.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
/// Where the tracker engineer's build puts the script.
pub const DEFAULT_TRACKER_FILE: &str = "tracker/dist/t.js";
/// Connections open at once: far more than the browsers behind one instance
/// keep alive, and few enough that their tasks and buffers stay within the
/// process's memory and under the usual file-descriptor limits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Shortest accepted visitor secret: 16 bytes keep the keyed hash unguessable.
pub const MIN_VISITOR_SECRET_BYTES: usize = 16;

/// Lumen ingest: the beacon collector: HTTP beacons in, Avro records on lumen.raw out.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-ingest", version)]
pub struct Config {
    /// Public HTTP listener.
    #[command(flatten)]
    pub http: HttpConfig,
    /// Request limits.
    #[command(flatten)]
    pub limits: Limits,
    /// Visitor id, sites and client IP.
    #[command(flatten)]
    pub privacy: PrivacyConfig,
    /// Producer tuning.
    #[command(flatten)]
    pub producer: ProducerConfig,
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            limits: Limits::default(),
            privacy: PrivacyConfig::default(),
            producer: ProducerConfig::default(),
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            admin: AdminConfig { addr: None },
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Refuses combinations the service cannot run with, saying what to fix.
    pub fn validate(&self) -> Result<(), Error> {
        self.limits.validate()?;
        self.privacy.validate()?;
        let positive = [
            ("--body-timeout-ms", self.http.body_timeout_ms),
            ("--header-timeout-ms", self.http.header_timeout_ms),
            ("--produce-timeout-ms", self.producer.produce_timeout_ms),
            (
                "--readiness-interval-ms",
                self.producer.readiness_interval_ms,
            ),
            ("--retry-after-seconds", self.producer.retry_after_seconds),
            (
                "--max-connections",
                u64::try_from(self.http.max_connections).unwrap_or(u64::MAX),
            ),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((flag, _)) => Err(Error::Config(format!("{flag} must be above 0"))),
            None => Ok(()),
        }
    }
}

/// The public HTTP listener and its timeouts.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Public listen address for beacons, pixels and the tracker; port 0 picks a free port.
    #[arg(long = "listen-addr", env = "LUMEN_LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,

    /// Longest time a client may take to send a request body, in milliseconds;
    /// slower bodies are answered 408 (slowloris protection).
    #[arg(
        long = "body-timeout-ms",
        env = "LUMEN_BODY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub body_timeout_ms: u64,

    /// Longest time a client may take to send the request headers, in
    /// milliseconds; slower connections are closed.
    #[arg(
        long = "header-timeout-ms",
        env = "LUMEN_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_timeout_ms: u64,

    /// Longest wait for in-flight requests on shutdown, in milliseconds.
    #[arg(
        long = "drain-timeout-ms",
        env = "LUMEN_DRAIN_TIMEOUT_MS",
        default_value_t = 20_000
    )]
    pub drain_timeout_ms: u64,

    /// The tracker script served at `/t.js`, read once at start-up.
    #[arg(long = "tracker-file", env = "LUMEN_TRACKER_FILE", default_value = DEFAULT_TRACKER_FILE)]
    pub tracker_file: PathBuf,

    /// Most client connections open at once; at the cap no more are
    /// accepted (they wait in the kernel's backlog) until one closes.
    #[arg(
        long = "max-connections",
        env = "LUMEN_MAX_CONNECTIONS",
        default_value_t = DEFAULT_MAX_CONNECTIONS
    )]
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            body_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            drain_timeout_ms: 20_000,
            tracker_file: PathBuf::from(DEFAULT_TRACKER_FILE),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl HttpConfig {
    /// `--body-timeout-ms` as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

/// Size limits on requests and event fields.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest request body on the wire, in bytes (413 above).
    #[arg(long = "max-body-bytes", env = "LUMEN_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest request body after gzip decompression, in bytes (413 above;
    /// decompression stops there, so a gzip bomb costs no more).
    #[arg(
        long = "max-decompressed-bytes",
        env = "LUMEN_MAX_DECOMPRESSED_BYTES",
        default_value_t = 4 * 1024 * 1024
    )]
    pub max_decompressed_bytes: usize,

    /// Most events in one request (413 above).
    #[arg(
        long = "max-batch-events",
        env = "LUMEN_MAX_BATCH_EVENTS",
        default_value_t = 500
    )]
    pub max_batch_events: usize,

    /// Longest `url` and `referrer`, in bytes (the event is rejected above).
    #[arg(
        long = "max-url-bytes",
        env = "LUMEN_MAX_URL_BYTES",
        default_value_t = 4096
    )]
    pub max_url_bytes: usize,

    /// Longest user agent kept, in bytes (longer ones are truncated).
    #[arg(
        long = "max-user-agent-bytes",
        env = "LUMEN_MAX_USER_AGENT_BYTES",
        default_value_t = 1024
    )]
    pub max_user_agent_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_decompressed_bytes: 4 * 1024 * 1024,
            max_batch_events: 500,
            max_url_bytes: 4096,
            max_user_agent_bytes: 1024,
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), Error> {
        let sizes = [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-decompressed-bytes", self.max_decompressed_bytes),
            ("--max-batch-events", self.max_batch_events),
            ("--max-url-bytes", self.max_url_bytes),
            ("--max-user-agent-bytes", self.max_user_agent_bytes),
        ];
        if let Some((flag, _)) = sizes.iter().find(|(_, value)| *value == 0) {
            return Err(Error::Config(format!("{flag} must be above 0")));
        }
        if self.max_decompressed_bytes < self.max_body_bytes {
            return Err(Error::Config(
                "--max-decompressed-bytes must be at least --max-body-bytes".into(),
            ));
        }
        Ok(())
    }
}

/// Visitor hashing, the site allow-list and where client IPs come from.
#[derive(Debug, Clone, Default, Args)]
pub struct PrivacyConfig {
    /// Secret from which the daily visitor-id salt derives; every instance
    /// needs the same one (at least 16 bytes). Required unless
    /// `--insecure-dev-visitor-secret` is given.
    #[arg(
        long = "visitor-secret",
        env = "LUMEN_VISITOR_SECRET",
        hide_env_values = true
    )]
    pub visitor_secret: Option<String>,

    /// Use a fixed, publicly known visitor secret. For local demos only:
    /// visitor ids become guessable. Logged as a warning at start-up.
    #[arg(
        long = "insecure-dev-visitor-secret",
        env = "LUMEN_INSECURE_DEV_VISITOR_SECRET"
    )]
    pub insecure_dev_visitor_secret: bool,

    /// JSON file of sites: site id → allowed origins and hostnames (see
    /// `ingest/sites.example.json`). Required.
    #[arg(long = "sites-file", env = "LUMEN_SITES_FILE")]
    pub sites_file: Option<PathBuf>,

    /// Proxies (CIDR, comma-separated) whose `X-Forwarded-For` / `Forwarded`
    /// headers are believed; from anyone else the socket address is the client.
    #[arg(
        long = "trusted-proxies",
        env = "LUMEN_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpNet>,
}

/// The fixed secret behind `--insecure-dev-visitor-secret`.
pub const INSECURE_DEV_VISITOR_SECRET: &str = "lumen-insecure-development-secret";

impl PrivacyConfig {
    /// The secret to derive visitor salts from.
    pub fn secret(&self) -> Result<&str, Error> {
        match (&self.visitor_secret, self.insecure_dev_visitor_secret) {
            (Some(secret), _) if secret.len() >= MIN_VISITOR_SECRET_BYTES => Ok(secret),
            (Some(_), _) => Err(Error::Config(format!(
                "--visitor-secret / LUMEN_VISITOR_SECRET must be at least {MIN_VISITOR_SECRET_BYTES} bytes"
            ))),
            (None, true) => Ok(INSECURE_DEV_VISITOR_SECRET),
            (None, false) => Err(Error::Config(
                "set --visitor-secret / LUMEN_VISITOR_SECRET (the same on every instance), \
                 or --insecure-dev-visitor-secret for a local demo"
                    .into(),
            )),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        self.secret()?;
        if self.sites_file.is_none() {
            return Err(Error::Config(
                "set --sites-file / LUMEN_SITES_FILE (see ingest/sites.example.json)".into(),
            ));
        }
        Ok(())
    }
}

/// Compression of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// Fast, light on CPU.
    Lz4,
    /// Smaller batches, more CPU.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
            Self::None => "none",
        }
    }
}

/// The Kafka producer's delivery bounds and batching.
#[derive(Debug, Clone, Args)]
pub struct ProducerConfig {
    /// Longest wait for Kafka to confirm a record (librdkafka
    /// `message.timeout.ms`), in milliseconds; the request is answered 503 after it.
    #[arg(
        long = "produce-timeout-ms",
        env = "LUMEN_PRODUCE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub produce_timeout_ms: u64,

    /// Time the producer waits to fill a batch (`linger.ms`), in milliseconds.
    #[arg(long = "linger-ms", env = "LUMEN_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u64,

    /// Batch compression.
    #[arg(long = "compression", env = "LUMEN_COMPRESSION", value_enum, default_value_t = Compression::Lz4)]
    pub compression: Compression,

    /// Most records waiting in the producer; beyond it requests get 503
    /// (`queue.buffering.max.messages`).
    #[arg(
        long = "producer-queue-max-messages",
        env = "LUMEN_PRODUCER_QUEUE_MAX_MESSAGES",
        default_value_t = 100_000
    )]
    pub queue_max_messages: u64,

    /// How often Kafka metadata is fetched to decide readiness, in milliseconds.
    #[arg(
        long = "readiness-interval-ms",
        env = "LUMEN_READINESS_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub readiness_interval_ms: u64,

    /// `Retry-After` sent with 503 answers, in seconds.
    #[arg(
        long = "retry-after-seconds",
        env = "LUMEN_RETRY_AFTER_SECONDS",
        default_value_t = 5
    )]
    pub retry_after_seconds: u64,

    /// Longest wait for the producer to flush on shutdown, in milliseconds.
    #[arg(
        long = "flush-timeout-ms",
        env = "LUMEN_FLUSH_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub flush_timeout_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            produce_timeout_ms: 5_000,
            linger_ms: 5,
            compression: Compression::Lz4,
            queue_max_messages: 100_000,
            readiness_interval_ms: 5_000,
            retry_after_seconds: 5,
            flush_timeout_ms: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn valid() -> Config {
        let mut config = Config::default();
        config.privacy.visitor_secret = Some("0123456789abcdef".into());
        config.privacy.sites_file = Some("sites.json".into());
        config
    }

    #[test]
    fn defaults_match_the_flag_defaults() {
        let parsed = Config::try_parse_from(["lumen-ingest"]).expect("no required flags");
        let default = Config::default();
        assert_eq!(parsed.http.listen_addr, default.http.listen_addr);
        assert_eq!(parsed.http.tracker_file, default.http.tracker_file);
        assert_eq!(parsed.limits.max_body_bytes, default.limits.max_body_bytes);
        assert_eq!(
            parsed.limits.max_decompressed_bytes,
            default.limits.max_decompressed_bytes
        );
        assert_eq!(
            parsed.limits.max_batch_events,
            default.limits.max_batch_events
        );
        assert_eq!(
            parsed.producer.produce_timeout_ms,
            default.producer.produce_timeout_ms
        );
        assert_eq!(parsed.producer.compression, default.producer.compression);
        assert_eq!(parsed.http.max_connections, default.http.max_connections);
    }

    #[test]
    fn a_complete_config_is_valid() {
        valid().validate().expect("valid");
    }

    #[rstest]
    #[case::no_secret(|c: &mut Config| c.privacy.visitor_secret = None, "--visitor-secret")]
    #[case::short_secret(|c: &mut Config| c.privacy.visitor_secret = Some("short".into()), "at least 16")]
    #[case::no_sites(|c: &mut Config| c.privacy.sites_file = None, "--sites-file")]
    #[case::zero_batch(|c: &mut Config| c.limits.max_batch_events = 0, "--max-batch-events")]
    #[case::inflation(|c: &mut Config| c.limits.max_decompressed_bytes = 10, "--max-decompressed-bytes")]
    #[case::zero_timeout(|c: &mut Config| c.producer.produce_timeout_ms = 0, "--produce-timeout-ms")]
    #[case::no_connections(|c: &mut Config| c.http.max_connections = 0, "--max-connections")]
    fn refuses_unusable_settings(#[case] break_it: fn(&mut Config), #[case] message: &str) {
        let mut config = valid();
        break_it(&mut config);
        let error = config.validate().expect_err("invalid");
        assert!(error.to_string().contains(message), "{error}");
    }

    #[test]
    fn dev_secret_only_when_asked_for() {
        let mut config = valid();
        config.privacy.visitor_secret = None;
        config.privacy.insecure_dev_visitor_secret = true;
        assert_eq!(
            config.privacy.secret().expect("dev secret"),
            INSECURE_DEV_VISITOR_SECRET
        );
    }

    #[test]
    fn trusted_proxies_parse_as_cidrs() {
        let config =
            Config::try_parse_from(["lumen-ingest", "--trusted-proxies", "10.0.0.0/8,::1/128"])
                .expect("cidrs");
        assert_eq!(config.privacy.trusted_proxies.len(), 2);
        assert!(
            Config::try_parse_from(["lumen-ingest", "--trusted-proxies", "10.0.0.300/8"]).is_err()
        );
    }
}
