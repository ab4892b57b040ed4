//! Lumen's data contract, shared by ingest, enrich and sink: the event types,
//! their Avro schemas (`avro/*.avsc`) with a single-object codec that reads
//! every schema version it knows, and the ClickHouse migrations.
//!
//! Nothing here talks to Kafka; the migration runner is the only code that
//! talks to ClickHouse.

pub mod codec;
pub mod error;
pub mod events;
pub mod migrate;
mod positional;
pub mod token;

pub use codec::{AvroRecord, Codec};
pub use error::{Error, Result};
pub use events::{
    Attribution, Channel, Confidence, DeviceType, EnrichedEvent, EventKind, RawEvent, ShareMethod,
    ShareRecord, TokenStatus,
};
pub use token::{ShareToken, TokenError};
