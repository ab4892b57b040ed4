//! Flag groups shared by the three binaries, flattened into each binary's own
//! `clap` config. Every flag has a `LUMEN_*` environment variable behind it.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

/// Where and how to reach Kafka. Any librdkafka property (security, SASL,
/// TLS, tuning) passes through `--kafka-option key=value`.
#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap brokers.
    #[arg(
        long = "kafka-brokers",
        env = "LUMEN_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Extra librdkafka property as key=value; repeat the flag for several
    /// (e.g. `--kafka-option security.protocol=SASL_SSL`). In the environment,
    /// separate several with commas.
    #[arg(
        long = "kafka-option",
        env = "LUMEN_KAFKA_OPTIONS",
        value_parser = parse_key_value,
        value_delimiter = ','
    )]
    pub options: Vec<(String, String)>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            options: Vec::new(),
        }
    }
}

/// Kafka topic names from DESIGN.md, each overridable.
#[derive(Debug, Clone, Args)]
pub struct TopicsConfig {
    /// Topic of raw events written by ingest.
    #[arg(
        long = "topic-raw",
        env = "LUMEN_TOPIC_RAW",
        default_value = "lumen.raw"
    )]
    pub raw: String,

    /// Topic of enriched events written by enrich.
    #[arg(
        long = "topic-enriched",
        env = "LUMEN_TOPIC_ENRICHED",
        default_value = "lumen.enriched"
    )]
    pub enriched: String,

    /// Compacted topic of share records (enrich's restorable token store).
    #[arg(
        long = "topic-shares",
        env = "LUMEN_TOPIC_SHARES",
        default_value = "lumen.shares"
    )]
    pub shares: String,

    /// Dead-letter topic: records that cannot be processed, reason in headers.
    #[arg(
        long = "topic-dlq",
        env = "LUMEN_TOPIC_DLQ",
        default_value = "lumen.dlq"
    )]
    pub dlq: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            raw: "lumen.raw".to_owned(),
            enriched: "lumen.enriched".to_owned(),
            shares: "lumen.shares".to_owned(),
            dlq: "lumen.dlq".to_owned(),
        }
    }
}

/// The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Args)]
pub struct AdminConfig {
    /// Address of the admin HTTP server; port 0 picks a free port.
    #[arg(long = "admin-addr", env = "LUMEN_ADMIN_ADDR")]
    pub addr: Option<SocketAddr>,
}

impl AdminConfig {
    /// The configured address, or `127.0.0.1:<default_port>` (each binary has
    /// its own default admin port, see DESIGN.md).
    pub fn addr_or(&self, default_port: u16) -> SocketAddr {
        self.addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging flags; the filter itself comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Default, Args)]
pub struct LogConfig {
    /// Log format: `text` for people, `json` for machines.
    #[arg(long = "log-format", env = "LUMEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected key=value, got `{raw}`")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use rstest::rstest;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        kafka: KafkaConfig,
    }

    #[rstest]
    #[case("acks=all", Some(("acks", "all")))]
    #[case(" sasl.username = lumen ", Some(("sasl.username", "lumen")))]
    #[case("sasl.password=a=b", Some(("sasl.password", "a=b")))]
    #[case("noequals", None)]
    #[case("=value", None)]
    fn parses_kafka_options(#[case] raw: &str, #[case] expected: Option<(&str, &str)>) {
        let parsed = parse_key_value(raw).ok();
        assert_eq!(parsed, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn repeated_kafka_option_flags_accumulate() {
        let flags =
            Flags::try_parse_from(["bin", "--kafka-option", "a=1", "--kafka-option", "b=2"])
                .expect("valid flags");
        assert_eq!(
            flags.kafka.options,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
    }
}
