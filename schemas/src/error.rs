//! Errors of the data contract: decoding Kafka payloads and applying
//! migrations.

/// Everything that can go wrong in this crate. Decoding errors are data
/// errors (send the record to the dead-letter topic); migration errors are
/// start-up errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the 10-byte single-object header.
    #[error("payload of {0} bytes is shorter than the single-object header")]
    Truncated(usize),
    /// The payload does not start with the Avro single-object marker `C3 01`.
    #[error("payload does not start with the Avro single-object marker C3 01")]
    BadMagic,
    /// The writer schema's fingerprint is not one this build knows.
    #[error("unknown writer schema fingerprint {0:016x}")]
    UnknownSchema(u64),
    /// The body does not match the writer schema.
    #[error("corrupt Avro body: {0}")]
    CorruptBody(String),
    /// Bytes left over after the record.
    #[error("{0} trailing bytes after the Avro record")]
    TrailingBytes(usize),
    /// The value could not be encoded with the schema (a bug, not bad input).
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// A schema file in this crate does not parse (a bug caught by tests).
    #[error("invalid schema {name}: {reason}")]
    InvalidSchema {
        /// Record name.
        name: &'static str,
        /// Parser message.
        reason: String,
    },
    /// A database name that is not a plain identifier.
    #[error("invalid database name `{0}`: use letters, digits and underscores")]
    InvalidDatabase(String),
    /// A retention period of zero days would drop every row.
    #[error("the events retention must be at least one day")]
    InvalidRetention,
    /// ClickHouse refused or could not run a migration.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// Migration number.
        version: u32,
        /// File name.
        name: &'static str,
        /// The client error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// ClickHouse could not be queried for the applied migrations.
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

impl Error {
    /// A bounded label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated(_) => "truncated",
            Self::BadMagic => "bad_magic",
            Self::UnknownSchema(_) => "unknown_schema",
            Self::CorruptBody(_) => "corrupt_body",
            Self::TrailingBytes(_) => "trailing_bytes",
            Self::Encode(_) => "encode",
            Self::InvalidSchema { .. } => "invalid_schema",
            Self::InvalidDatabase(_) => "invalid_database",
            Self::InvalidRetention => "invalid_retention",
            Self::Migration { .. } => "migration",
            Self::ClickHouse(_) => "clickhouse",
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
