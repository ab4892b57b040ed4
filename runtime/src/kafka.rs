//! librdkafka client set-up and error classification. Pure mechanism: which
//! topics to read or write, and what to do with failures, is decided by the
//! binaries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;

use crate::config::KafkaConfig;

/// Settings every Lumen client starts from, before the binary's defaults.
///
/// `metadata.recovery.rebootstrap.trigger.ms`: librdkafka 2.12 drops a
/// broker that a metadata response leaves out, and a broker coming back
/// from a restart or a stall answers such responses while its controller
/// still fences it. A client that dropped its only broker has none left to
/// ask and waits for the re-bootstrap, after 5 minutes by default (seen:
/// enrich's consumer idle for over 3 minutes after Kafka was frozen for
/// 60 s, "no broker available for coordinator query"). 10 s bounds that.
const CLIENT_DEFAULTS: &[(&str, &str)] = &[("metadata.recovery.rebootstrap.trigger.ms", "10000")];

impl KafkaConfig {
    /// A client config with the brokers, the settings every Lumen client
    /// shares, the binary's `defaults`, then the `--kafka-option` overrides
    /// applied last so that an operator can change any of them.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in CLIENT_DEFAULTS.iter().chain(defaults) {
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

/// Runs a blocking librdkafka call on tokio's blocking pool and waits for it
/// at most `limit`: `None` if it has not returned by then. librdkafka does
/// not always honour its own timeouts (its issues #5456 and #5511), and a
/// synchronous offset commit has none: it waits for the group coordinator
/// as long as the client's group state says there is none. A service must
/// not wait for ever, so the caller gives up on the client instead; the
/// call keeps its thread until librdkafka returns.
pub async fn call_within<T: Send + 'static>(
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(call)).await {
        Ok(Ok(returned)) => Some(returned),
        Ok(Err(failed)) => match failed.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_cancelled) => None,
        },
        Err(_elapsed) => None,
    }
}

/// How long a Kafka client may be unable to work before it is replaced:
/// librdkafka's default session timeout, after which the broker has
/// expired a group member that could not reach its coordinator, so nothing
/// of the group state is lost by replacing it; longer than a broker
/// restart, so a lasting outage replaces a client only once per period.
pub const KAFKA_LOST_AFTER: Duration = Duration::from_secs(45);

/// When a Kafka client was last seen able to work; it is lost once that
/// was [`KAFKA_LOST_AFTER`] ago. librdkafka 2.12 can leave a client with no
/// broker to ask, for good (its issues #5301, #5511 and #3740: a broker
/// dropped from metadata is decommissioned, and a broker back from a stall
/// answers metadata listing none), so the binaries replace such a client.
pub struct HealthWatch {
    last_healthy: Mutex<Instant>,
}

impl Default for HealthWatch {
    /// Counted from now until the first healthy observation.
    fn default() -> Self {
        Self {
            last_healthy: Mutex::new(Instant::now()),
        }
    }
}

impl HealthWatch {
    /// Records whether the client looked able to work just now.
    pub fn observe(&self, healthy: bool) {
        if healthy {
            self.restart();
        }
    }

    /// Counts again from now: for a client just put in place of a lost one.
    pub fn restart(&self) {
        if let Ok(mut last_healthy) = self.last_healthy.lock() {
            *last_healthy = Instant::now();
        }
    }

    /// Whether the client has not looked able to work for
    /// [`KAFKA_LOST_AFTER`].
    pub fn lost(&self) -> bool {
        self.down_for(KAFKA_LOST_AFTER)
    }

    fn down_for(&self, limit: Duration) -> bool {
        self.last_healthy
            .lock()
            .is_ok_and(|last_healthy| last_healthy.elapsed() >= limit)
    }
}

/// A consumer's [`HealthWatch`], fed by its statistics: it works while its
/// group has a coordinator, its join is not waiting for metadata, and every
/// partition assigned to it has a leader and an active fetch. Seen after
/// Kafka stalled for 60 s: a group state in `query-coord` for minutes while
/// the re-bootstrap did not bring it back, and consumers created as Kafka
/// came back that joined and never read a record.
#[derive(Default)]
pub struct GroupWatch {
    health: HealthWatch,
}

impl GroupWatch {
    /// Records a statistics report of the consumer.
    pub fn observe(&self, statistics: &Statistics) {
        // A join waits in `init` or `wait-metadata` only until the topic's
        // metadata arrives, normally milliseconds; a consumer created as a
        // frozen Kafka came back was seen waiting there for good.
        let group_up = statistics.cgrp.as_ref().is_some_and(|group| {
            group.state == "up" && !matches!(group.join_state.as_str(), "init" | "wait-metadata")
        });
        // Partition -1 is librdkafka's internal queue; a paused partition
        // stays `active`.
        let fetching = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|partition| partition.partition >= 0 && partition.desired)
            .all(|partition| partition.leader >= 0 && partition.fetch_state == "active");
        self.health.observe(group_up && fetching);
    }

    /// Whether no report has shown the consumer able to work for
    /// [`KAFKA_LOST_AFTER`] (counted from the watch's creation until the
    /// first such report).
    pub fn lost(&self) -> bool {
        self.health.lost()
    }
}

/// Logs a consumer's errors without flooding the log: librdkafka reports
/// an unreachable cluster on nearly every poll (about 20 a second were
/// seen, and 8 in one millisecond from a reader as Kafka came back), so
/// each kind of error is logged at most once per interval, with the number
/// left unlogged since. Polled errors and the client's own (a consumer
/// context's `error`) go through it alike.
pub struct ConsumerErrors {
    every: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Default for ConsumerErrors {
    /// Each kind at most every 10 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl ConsumerErrors {
    /// Logs each kind at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `error` unless its kind was logged less than the interval ago,
    /// or it is the end of a partition: with `enable.partition.eof` that is
    /// news for the reader, not an error, and librdkafka reports each one on
    /// the client's queue too (rdkafka's default context logs those at
    /// ERROR).
    pub fn log(&self, error: &KafkaError) {
        if let Some((tag, suppressed)) = self.due(error, Instant::now()) {
            tracing::warn!(%error, tag, suppressed, "consumer error");
        }
    }

    /// Whether `error` is logged at `now`: its kind, and how many of its
    /// kind were not logged since the last one that was.
    fn due(&self, error: &KafkaError, now: Instant) -> Option<(&'static str, u64)> {
        let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if end_of_partition {
            return None;
        }
        let tag = error_tag(error);
        self.admit(tag, now).map(|suppressed| (tag, suppressed))
    }

    /// Whether an error of kind `tag` is logged at `now`, with how many of
    /// its kind were not logged since the last one that was.
    fn admit(&self, tag: &'static str, now: Instant) -> Option<u64> {
        let Ok(mut last) = self.last.lock() else {
            return Some(0);
        };
        match last.get_mut(tag) {
            Some((at, suppressed)) if now.duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                last.insert(tag, (now, 0));
                Some(0)
            }
        }
    }
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
        assert_eq!(
            client.get("metadata.recovery.rebootstrap.trigger.ms"),
            Some("10000")
        );
    }

    #[tokio::test]
    async fn a_call_is_waited_for_only_within_its_limit() {
        let limit = Duration::from_millis(20);
        let late = call_within(limit, || std::thread::sleep(Duration::from_millis(300))).await;
        assert_eq!(late, None);
        assert_eq!(call_within(limit, || 7).await, Some(7));
    }

    #[test]
    fn each_kind_of_consumer_error_is_logged_once_per_interval() {
        let errors = ConsumerErrors::new(Duration::from_secs(10));
        let start = Instant::now();
        let down = error_tag(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown,
        ));
        assert_eq!(errors.admit(down, start), Some(0));
        assert_eq!(errors.admit(down, start + Duration::from_secs(1)), None);
        assert_eq!(errors.admit(down, start + Duration::from_secs(2)), None);
        assert_eq!(
            errors.admit("other", start + Duration::from_secs(2)),
            Some(0)
        );
        assert_eq!(errors.admit(down, start + Duration::from_secs(10)), Some(2));
        assert_eq!(errors.admit(down, start + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_end_of_a_partition_is_never_logged_as_an_error() {
        let errors = ConsumerErrors::new(Duration::from_secs(10));
        let now = Instant::now();
        let end = KafkaError::Global(RDKafkaErrorCode::PartitionEOF);
        assert_eq!(errors.due(&end, now), None);
        assert_eq!(errors.due(&KafkaError::PartitionEOF(2), now), None);
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(errors.due(&down, now), Some(("all_brokers_down", 0)));
    }

    fn report(state: &str) -> Statistics {
        joining(state, "steady")
    }

    fn joining(state: &str, join_state: &str) -> Statistics {
        Statistics {
            cgrp: Some(rdkafka::statistics::ConsumerGroup {
                state: state.into(),
                join_state: join_state.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn health_is_lost_until_observed_or_restarted() {
        let watch = HealthWatch::default();
        assert!(watch.down_for(Duration::ZERO));
        assert!(!watch.down_for(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(30));
        watch.observe(false);
        assert!(watch.down_for(Duration::from_millis(20)));
        watch.observe(true);
        assert!(!watch.down_for(Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(watch.down_for(Duration::from_millis(20)));
        watch.restart();
        assert!(!watch.down_for(Duration::from_millis(20)));
    }

    #[test]
    fn a_join_waiting_for_metadata_keeps_the_consumer_down() {
        let watch = GroupWatch::default();
        std::thread::sleep(Duration::from_millis(30));
        watch.observe(&joining("up", "wait-metadata"));
        watch.observe(&joining("up", "init"));
        assert!(watch.health.down_for(Duration::from_millis(20)));
        watch.observe(&joining("up", "wait-join"));
        assert!(!watch.health.down_for(Duration::from_millis(20)));
    }

    /// A report of a group that is up, with one assigned partition.
    fn assigned(leader: i32, fetch_state: &str) -> Statistics {
        let partition = rdkafka::statistics::Partition {
            partition: 0,
            leader,
            desired: true,
            fetch_state: fetch_state.into(),
            ..Default::default()
        };
        let internal = rdkafka::statistics::Partition {
            partition: -1,
            leader: -1,
            fetch_state: "none".into(),
            ..Default::default()
        };
        let topic = rdkafka::statistics::Topic {
            partitions: [(0, partition), (-1, internal)].into(),
            ..Default::default()
        };
        Statistics {
            topics: [("raw".to_owned(), topic)].into(),
            ..report("up")
        }
    }

    #[test]
    fn an_assigned_partition_without_a_leader_or_a_fetch_keeps_the_consumer_down() {
        let watch = GroupWatch::default();
        std::thread::sleep(Duration::from_millis(30));
        watch.observe(&assigned(-1, "active"));
        watch.observe(&assigned(1, "offset-query"));
        assert!(watch.health.down_for(Duration::from_millis(20)));
        watch.observe(&assigned(1, "active"));
        assert!(!watch.health.down_for(Duration::from_millis(20)));
    }

    #[test]
    fn a_group_is_down_until_a_report_shows_it_up() {
        let watch = GroupWatch::default();
        assert!(watch.health.down_for(Duration::ZERO));
        assert!(!watch.health.down_for(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(30));
        watch.observe(&report("query-coord"));
        watch.observe(&Statistics::default());
        assert!(watch.health.down_for(Duration::from_millis(20)));
        watch.observe(&report("up"));
        assert!(!watch.health.down_for(Duration::from_millis(20)));
    }
}
