//! Errors of the sink. Data errors (a record that cannot be decoded or a row
//! ClickHouse refuses) are not here: they are dead letters, routed to
//! `lumen.dlq` by `dlq.rs`. What is here stops the service or is retried.

/// Everything that can stop or delay the sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Migrations could not be applied.
    #[error("ClickHouse migrations: {0}")]
    Migration(#[from] lumen_schemas::Error),
    /// A Kafka client could not be created or used.
    #[error("Kafka {operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// ClickHouse failed in a way that retrying may fix.
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// The admin server could not bind its port.
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
    /// Building the Avro codec failed (a bug in the schemas crate).
    #[error("codec: {0}")]
    Codec(lumen_schemas::Error),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Migration(_) => "migration",
            Self::Kafka { source, .. } => lumen_runtime::kafka::error_tag(source),
            Self::ClickHouse(_) => "clickhouse",
            Self::Admin(_) => "admin",
            Self::Codec(_) => "codec",
        }
    }

    /// Wraps a Kafka error with the operation that failed.
    pub fn kafka(operation: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| Self::Kafka { operation, source }
    }
}

/// Result with the sink's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
