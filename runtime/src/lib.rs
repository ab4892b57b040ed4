//! The plumbing every Lumen binary shares and nothing about the data itself:
//! command-line flags with `LUMEN_*` variables, the admin HTTP server
//! (`/metrics`, `/healthz`, `/readyz`), tracing set-up, the librdkafka client
//! configuration and delivery acknowledgements, reading back a partition's recent records to deduplicate
//! by event id, and SIGTERM handling.
//!
//! Event types, codecs and ClickHouse migrations live in `lumen-schemas`.

pub mod admin;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod kafka;
pub mod process;
pub mod reader;
pub mod shutdown;
pub mod telemetry;

pub use admin::{AdminServer, Readiness};
pub use config::{AdminConfig, KafkaConfig, LogConfig, LogFormat, TopicsConfig};
pub use shutdown::Shutdown;
