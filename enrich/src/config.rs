//! Flags and `LUMEN_*` variables of `lumen-enrich`.

use clap::Parser;
use lumen_runtime::{AdminConfig, KafkaConfig, LogConfig, TopicsConfig};

/// Admin port from DESIGN.md.
pub const DEFAULT_ADMIN_PORT: u16 = 9102;

/// Lumen enrich: token resolution, channel inference and user-agent parsing: lumen.raw in, lumen.enriched out.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-enrich", version)]
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
