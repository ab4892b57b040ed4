//! librdkafka client set-up and error classification. Pure mechanism: which
//! topics to read or write, and what to do with failures, is decided by the
//! binaries.

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;

impl KafkaConfig {
    /// A client config with the brokers, then the `--kafka-option` overrides
    /// applied last so that an operator can change any default a binary sets.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }
}

/// A bounded label for an rdkafka error, for metrics and logs.
pub fn error_tag(error: &KafkaError) -> &'static str {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => "queue_full",
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => "message_too_large",
        Some(RDKafkaErrorCode::MessageTimedOut) => "timed_out",
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => "unknown_topic",
        Some(RDKafkaErrorCode::AllBrokersDown) => "all_brokers_down",
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => "not_authorized",
        Some(RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::ProducerFenced) => "fenced",
        Some(_) => "other",
        None => match error {
            KafkaError::Canceled => "canceled",
            KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => "config",
            _ => "other",
        },
    }
}

/// Whether retrying the same operation later may succeed.
pub fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::QueueFull
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
        )
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rstest::rstest;

    use super::*;

    fn produce_error(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[rstest]
    #[case(RDKafkaErrorCode::QueueFull, "queue_full", true)]
    #[case(RDKafkaErrorCode::MessageTimedOut, "timed_out", true)]
    #[case(RDKafkaErrorCode::AllBrokersDown, "all_brokers_down", true)]
    #[case(RDKafkaErrorCode::MessageSizeTooLarge, "message_too_large", false)]
    #[case(RDKafkaErrorCode::TopicAuthorizationFailed, "not_authorized", false)]
    #[case(RDKafkaErrorCode::ProducerFenced, "fenced", false)]
    #[case(RDKafkaErrorCode::NotLeaderForPartition, "other", true)]
    #[case(RDKafkaErrorCode::OperationTimedOut, "other", true)]
    #[case(RDKafkaErrorCode::InvalidMessage, "other", false)]
    fn classifies_errors(
        #[case] code: RDKafkaErrorCode,
        #[case] tag: &str,
        #[case] transient: bool,
    ) {
        let error = produce_error(code);
        assert_eq!(error_tag(&error), tag);
        assert_eq!(is_transient(&error), transient);
    }

    #[test]
    fn operator_options_override_binary_defaults() {
        let config = KafkaConfig {
            brokers: "k1:9092,k2:9092".into(),
            options: vec![("acks".into(), "1".into())],
        };
        let client = config.client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(client.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(client.get("acks"), Some("1"));
        assert_eq!(client.get("linger.ms"), Some("5"));
    }
}
