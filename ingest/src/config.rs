//! Flags and `LUMEN_*` variables of `lumen-ingest`.

use clap::Parser;
use lumen_runtime::{AdminConfig, KafkaConfig, LogConfig, TopicsConfig};

/// Admin port from DESIGN.md.
pub const DEFAULT_ADMIN_PORT: u16 = 9101;

/// Lumen ingest: the beacon collector: HTTP beacons in, Avro records on lumen.raw out.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-ingest", version)]
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
