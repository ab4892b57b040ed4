//! Errors of lumen-enrich, each with a bounded `reason()` label for metrics
//! and dead-letter headers. Record-level errors (a payload that does not
//! decode, a share without its token) send that record to `lumen.dlq`;
//! the others stop the service.

use rdkafka::error::KafkaError;

/// Everything that can go wrong in lumen-enrich.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The payload is not a raw event this build can decode.
    #[error("cannot decode raw event: {0}")]
    Decode(#[source] lumen_schemas::Error),
    /// A share event lacks a field every share has.
    #[error("share event without {0}")]
    InvalidShare(&'static str),
    /// An output record could not be encoded (a bug, not bad input).
    #[error("cannot encode output: {0}")]
    Encode(#[source] lumen_schemas::Error),
    /// A Kafka operation failed.
    #[error("kafka {operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// A transaction failed with an error that made the producer unusable,
    /// and a new producer replaced it: the batch is processed again.
    #[error("{0} (the transactional producer was replaced)")]
    ProducerRenewed(#[source] Box<Error>),
    /// The configuration or the topics do not allow the service to start.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Partitions' state could not be restored in time.
    #[error(
        "restoring partitions {partitions:?} of {topic} took longer than {timeout_ms} ms: raise --restore-timeout-ms"
    )]
    RestoreTimeout {
        /// Topic being read.
        topic: String,
        /// Partitions not read to their end in time.
        partitions: Vec<i32>,
        /// The limit.
        timeout_ms: u128,
    },
    /// A blocking librdkafka transactional call did not return within its
    /// own timeout plus a grace period (librdkafka issue #5456: a request
    /// to a group coordinator that went away can wait for ever). The
    /// producer is unusable until it returns, so it is replaced.
    #[error("kafka {operation} did not return within {timeout_ms} ms")]
    Stuck {
        /// What was being done.
        operation: &'static str,
        /// How long it was waited for.
        timeout_ms: u128,
    },
    /// The consumer's group had no coordinator, or a partition assigned to
    /// it no leader to fetch from, for too long: librdkafka can leave a
    /// consumer with no broker to ask, for good (see
    /// `lumen_runtime::kafka::GroupWatch`). The pipeline is started again
    /// with new clients.
    #[error(
        "the consumer had no group coordinator, or an assigned partition no leader to fetch from, for {after_ms} ms"
    )]
    GroupLost {
        /// How long it was without one.
        after_ms: u128,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Reading or writing explain's JSON lines.
    #[error("explain: {0}")]
    Io(#[from] std::io::Error),
    /// An explain input line is not a valid event.
    #[error("line {line}: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A bounded label for metrics and the `lumen.reason` DLQ header.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode(inner) => inner.reason(),
            Self::InvalidShare(_) => "invalid_share",
            Self::Encode(_) => "encode",
            Self::Kafka { source, .. } => lumen_runtime::kafka::error_tag(source),
            Self::ProducerRenewed(_) => "producer_renewed",
            Self::Config(_) => "config",
            Self::RestoreTimeout { .. } => "restore_timeout",
            Self::Stuck { .. } => "stuck",
            Self::GroupLost { .. } => "group_lost",
            Self::Task(_) => "task",
            Self::Io(_) => "io",
            Self::Json { .. } => "json",
        }
    }

    /// What was being done, for Kafka errors (`enqueue`, `deliver`,
    /// `commit transaction`...): a bounded label; `none` otherwise.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Kafka { operation, .. } | Self::Stuck { operation, .. } => operation,
            Self::ProducerRenewed(inner) => inner.operation(),
            _ => "none",
        }
    }

    /// Whether the pipeline is started again with new Kafka clients rather
    /// than the service stopped: its group lost its coordinator, or Kafka
    /// could not be reached (a client can stay unable to reach a broker that
    /// came back, librdkafka #5301 and #5511: seen here as a restarted
    /// pipeline's first metadata request failing for two minutes).
    pub fn restarts_pipeline(&self) -> bool {
        matches!(self, Self::GroupLost { .. }) || self.is_transient()
    }

    /// Whether the same operation may succeed later (Kafka unreachable or
    /// still electing leaders and coordinators), so waiting beats exiting.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => lumen_runtime::kafka::is_transient(source),
            _ => false,
        }
    }

    /// Shorthand for a Kafka error during `operation`.
    pub fn kafka(operation: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self::Kafka { operation, source }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use rdkafka::error::RDKafkaErrorCode;
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(Error::Decode(lumen_schemas::Error::BadMagic), "bad_magic")]
    #[case(Error::Decode(lumen_schemas::Error::Truncated(3)), "truncated")]
    #[case(Error::InvalidShare("share_token"), "invalid_share")]
    #[case(Error::Config("x".into()), "config")]
    #[case(
        Error::kafka("commit")(KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced)),
        "fenced"
    )]
    fn reasons_are_bounded_labels(#[case] error: Error, #[case] reason: &str) {
        assert_eq!(error.reason(), reason);
    }

    #[rstest]
    #[case(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut), true)]
    #[case(KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown), true)]
    #[case(
        KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed),
        false
    )]
    fn kafka_errors_that_waiting_cures_are_transient(
        #[case] source: KafkaError,
        #[case] transient: bool,
    ) {
        assert_eq!(
            Error::kafka("committed offsets")(source).is_transient(),
            transient
        );
        assert!(!Error::Config("x".into()).is_transient());
    }

    #[rstest]
    #[case(Error::GroupLost { after_ms: 45_000 }, true)]
    #[case(
        Error::kafka("fetch metadata")(KafkaError::MetadataFetch(
            RDKafkaErrorCode::BrokerTransportFailure
        )),
        true
    )]
    #[case(
        Error::kafka("commit")(KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced)),
        false
    )]
    #[case(Error::Config("x".into()), false)]
    #[case(
        Error::RestoreTimeout { topic: "t".into(), partitions: vec![0], timeout_ms: 1 },
        false
    )]
    fn new_clients_are_tried_when_kafka_is_out_of_reach(
        #[case] error: Error,
        #[case] restarts: bool,
    ) {
        assert_eq!(error.restarts_pipeline(), restarts);
    }
}
