//! Flags and `LUMEN_*` variables of `lumen-sink`.

use clap::Parser;
use lumen_runtime::{AdminConfig, KafkaConfig, LogConfig, TopicsConfig};

/// Admin port from DESIGN.md.
pub const DEFAULT_ADMIN_PORT: u16 = 9103;

/// Lumen sink: batched, exactly-once writes of lumen.enriched into ClickHouse.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-sink", version)]
pub struct Config {
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
