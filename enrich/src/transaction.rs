//! A small wrapper over rdkafka's transactional producer: one open
//! transaction at a time (the caller's duty: librdkafka refuses a second
//! `begin`), sends, the consumer's offsets inside the transaction, then
//! [`Transaction::commit`] or [`Transaction::abort`]. librdkafka's
//! transactional calls block, so they run on `spawn_blocking`.
//!
//! Pure mechanism: what to send and what to do after a failure is decided
//! by the consume loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_runtime::delivery::{AckReports, Acks};
use rdkafka::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{TopicPartitionList, message::ToBytes};

use crate::error::{Error, Result};

/// The librdkafka producer: its own thread polls delivery reports into
/// each transaction's [`Acks`].
type KafkaProducer = ThreadedProducer<AckReports>;

/// A transactional producer (`transactional.id` set, transactions
/// initialised).
pub struct TransactionalProducer {
    producer: Arc<KafkaProducer>,
    config: ClientConfig,
    timeout: Duration,
    renewals: RenewPolicy,
}

/// When a producer that raised a fatal error may be replaced: always,
/// except when it is fenced again soon after a renewal that followed a
/// fencing, which means another live instance shares the
/// `transactional.id`: then the service stops rather than fence it back.
#[derive(Debug, Default)]
struct RenewPolicy {
    fenced_at: Option<Instant>,
}

impl RenewPolicy {
    const FENCED_AGAIN_WITHIN: Duration = Duration::from_secs(60);

    fn allows(&self, error: &Error, now: Instant) -> bool {
        is_fatal(error)
            && !(is_fenced(error)
                && self
                    .fenced_at
                    .is_some_and(|at| now.duration_since(at) < Self::FENCED_AGAIN_WITHIN))
    }

    fn record(&mut self, error: &Error, now: Instant) {
        if is_fenced(error) {
            self.fenced_at = Some(now);
        }
    }
}

impl TransactionalProducer {
    /// Creates the producer and initialises transactions, which fences any
    /// older instance with the same `transactional.id` and aborts what it
    /// left open. `timeout` bounds each blocking transactional call.
    pub async fn new(config: &ClientConfig, timeout: Duration) -> Result<Self> {
        Ok(Self {
            producer: initialised(config, timeout).await?,
            config: config.clone(),
            timeout,
            renewals: RenewPolicy::default(),
        })
    }

    /// Whether [`renew`](Self::renew) may replace the producer after
    /// `error`: any fatal error, except a fencing soon after the last one.
    pub fn may_renew(&self, error: &Error) -> bool {
        self.renewals.allows(error, Instant::now())
    }

    /// Replaces a producer that raised the fatal `error` with a new one
    /// under the same `transactional.id`; its initialisation aborts
    /// whatever the old one left open. Seen after a broker restart: ending
    /// a transaction failed with `INVALID_TXN_STATE`, or the producer was
    /// reported fenced with no other instance running. Renewing after a
    /// fencing is safe: the offsets go through the consumer group's
    /// metadata, so a member that lost its partitions cannot commit them.
    pub async fn renew(&mut self, error: &Error) -> Result<()> {
        self.renewals.record(error, Instant::now());
        self.producer = initialised(&self.config, self.timeout).await?;
        Ok(())
    }

    /// Begins a transaction; only one is open at a time.
    pub fn begin(&mut self) -> Result<Transaction> {
        // A local state change in librdkafka: it does not block.
        self.producer
            .begin_transaction()
            .map_err(Error::kafka("begin transaction"))?;
        Ok(Transaction {
            producer: Arc::clone(&self.producer),
            timeout: self.timeout,
            acks: Arc::default(),
        })
    }
}

async fn initialised(config: &ClientConfig, timeout: Duration) -> Result<Arc<KafkaProducer>> {
    let producer: KafkaProducer = config
        .create_with_context(AckReports)
        .map_err(Error::kafka("create producer"))?;
    let producer = Arc::new(producer);
    let init = Arc::clone(&producer);
    tokio::task::spawn_blocking(move || init.init_transactions(timeout))
        .await?
        .map_err(Error::kafka("init transactions"))?;
    Ok(producer)
}

/// An open transaction. Dropping it without `commit` or `abort` leaves it
/// open until the broker's `transaction.timeout.ms`; the consume loop never
/// does.
pub struct Transaction {
    producer: Arc<KafkaProducer>,
    timeout: Duration,
    acks: Arc<Acks>,
}

impl Transaction {
    /// Enqueues a record in the transaction (librdkafka copies it).
    pub fn send<K, P>(&mut self, record: BaseRecord<'_, K, P>) -> Result<()>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let BaseRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
            delivery_opaque: (),
        } = record;
        self.acks.add(1);
        let record = BaseRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
            delivery_opaque: Arc::clone(&self.acks),
        };
        self.producer.send(record).map_err(|(error, _)| {
            self.acks.settle(1, None);
            Error::kafka("enqueue")(error)
        })
    }

    /// Adds the consumer's offsets to the transaction, so they commit with
    /// it. Kafka's committed offset is the *next* offset to read: callers
    /// pass the last processed offset + 1.
    pub async fn send_offsets(
        &mut self,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<()> {
        self.call("send offsets", move |producer, timeout| {
            producer.send_offsets_to_transaction(&offsets, &group, timeout)
        })
        .await
    }

    /// Waits for every record's acknowledgement, then commits. On failure
    /// the transaction is aborted before the error is returned.
    pub async fn commit(self) -> Result<()> {
        if let Err(error) = self.await_deliveries().await {
            self.abort().await?;
            return Err(error);
        }
        let mut resumed = 0;
        loop {
            let committed = self
                .call("commit transaction", |producer, timeout| {
                    producer.commit_transaction(timeout)
                })
                .await;
            match committed {
                Ok(()) => return Ok(()),
                Err(error) if is_resumable(&error) && resumed < COMMIT_RESUMES => {
                    resumed += 1;
                    tracing::warn!(%error, resumed, "commit not finished; resuming it");
                }
                Err(error) => return self.abandon(error).await,
            }
        }
    }

    /// Ends a transaction that failed with `error`, which is returned:
    /// aborted, unless the producer is unusable (renewing it aborts the
    /// transaction; an abort now would be refused or wait behind a stuck
    /// call).
    pub async fn abandon(self, error: Error) -> Result<()> {
        if !is_fatal(&error) {
            self.abort().await?;
        }
        Err(error)
    }

    /// Aborts: nothing sent in the transaction becomes visible to
    /// `read_committed` readers, and the offsets are not committed.
    pub async fn abort(self) -> Result<()> {
        self.call("abort transaction", |producer, timeout| {
            producer.abort_transaction(timeout)
        })
        .await
    }

    /// Runs a blocking transactional call of the producer, given the
    /// transactional timeout, on tokio's blocking pool, waiting for it up
    /// to `STUCK_GRACE` longer (see [`bounded`]).
    async fn call(
        &self,
        operation: &'static str,
        call: impl FnOnce(&KafkaProducer, Duration) -> std::result::Result<(), KafkaError>
        + Send
        + 'static,
    ) -> Result<()> {
        let producer = Arc::clone(&self.producer);
        let timeout = self.timeout;
        bounded(operation, timeout + STUCK_GRACE, move || {
            call(&producer, timeout)
        })
        .await
    }

    /// Waits for every acknowledgement, within the transactional timeout:
    /// after a broker restart librdkafka was seen holding a transaction's
    /// records without ever reporting them, which left the loop waiting
    /// for good; timed out, the transaction is aborted and retried.
    async fn await_deliveries(&self) -> Result<()> {
        tokio::time::timeout(self.timeout, self.acks.acknowledged())
            .await
            .unwrap_or(Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )))
            .map_err(Error::kafka("deliver"))
    }
}

/// Times a commit that timed out is resumed before the transaction is
/// given up on.
const COMMIT_RESUMES: usize = 3;

/// Whether a failed commit goes on in the background and must be resumed,
/// not aborted: librdkafka keeps a timed-out `commit_transaction` in
/// progress (its outcome unknown: the broker may have committed), refuses
/// an abort or a new transaction meanwhile ("Conflicting commit_transaction
/// API call is already in progress"), and finishes it when called again.
/// Aborting instead, then reprocessing, left a producer refusing every
/// later transaction for good (seen after Kafka was frozen for 60 s).
fn is_resumable(error: &Error) -> bool {
    matches!(
        error,
        Error::Kafka { source: KafkaError::Transaction(inner), .. }
            if inner.is_retriable() && !inner.txn_requires_abort()
    )
}

/// Extra time given to a blocking transactional call over the timeout it
/// was passed before it is declared stuck.
const STUCK_GRACE: Duration = Duration::from_secs(5);

/// Runs a blocking transactional call and stops waiting for it after
/// `limit` (the timeout passed to librdkafka plus `STUCK_GRACE`, see
/// [`Transaction::call`]): librdkafka does not always honour its timeout
/// (issue #5456). A stuck call keeps its thread until librdkafka returns;
/// the caller replaces the producer ([`Error::Stuck`] is fatal to it).
async fn bounded(
    operation: &'static str,
    limit: Duration,
    call: impl FnOnce() -> std::result::Result<(), KafkaError> + Send + 'static,
) -> Result<()> {
    lumen_runtime::kafka::call_within(limit, call)
        .await
        .ok_or(Error::Stuck {
            operation,
            timeout_ms: limit.as_millis(),
        })?
        .map_err(Error::kafka(operation))
}

/// Whether the producer can no longer be used (fenced by a newer instance,
/// a fatal librdkafka error, or a call that never returned): nothing can
/// be retried with it.
pub fn is_fatal(error: &Error) -> bool {
    if matches!(error, Error::Stuck { .. }) {
        return true;
    }
    let Error::Kafka { source, .. } = error else {
        return false;
    };
    // `Conflict`: an earlier call is still in progress in librdkafka (a
    // commit not resumed in time), and every begin or abort is refused.
    is_fenced(error)
        || matches!(source, KafkaError::Transaction(inner) if inner.is_fatal())
        || matches!(
            source.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::Conflict)
        )
}

/// Whether the producer was fenced: by a newer instance with the same
/// `transactional.id`, or by the broker after it lost the transaction.
pub fn is_fenced(error: &Error) -> bool {
    let Error::Kafka { source, .. } = error else {
        return false;
    };
    matches!(
        source.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(RDKafkaErrorCode::Fenced, true, true)]
    #[case(RDKafkaErrorCode::ProducerFenced, true, true)]
    #[case(RDKafkaErrorCode::InvalidProducerEpoch, true, true)]
    #[case(RDKafkaErrorCode::Fatal, true, false)]
    #[case(RDKafkaErrorCode::Conflict, true, false)]
    #[case(RDKafkaErrorCode::MessageTimedOut, false, false)]
    #[case(RDKafkaErrorCode::CoordinatorLoadInProgress, false, false)]
    fn fatal_and_fenced_errors(
        #[case] code: RDKafkaErrorCode,
        #[case] fatal: bool,
        #[case] fenced: bool,
    ) {
        let error = Error::kafka("commit")(KafkaError::MessageProduction(code));
        assert_eq!(is_fatal(&error), fatal);
        assert_eq!(is_fenced(&error), fenced);
        assert!(!is_fatal(&Error::Config("x".into())));
        assert!(!is_fenced(&Error::Config("x".into())));
    }

    #[tokio::test]
    async fn a_call_past_its_timeout_is_stuck_and_fatal_to_the_producer() {
        let timeout = Duration::from_millis(10);
        let stuck = bounded("send offsets", timeout, || {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })
        .await
        .expect_err("stuck");
        assert!(matches!(
            stuck,
            Error::Stuck {
                operation: "send offsets",
                timeout_ms: 10
            }
        ));
        assert!(is_fatal(&stuck) && !is_fenced(&stuck));
        assert!(RenewPolicy::default().allows(&stuck, Instant::now()));

        let answered = bounded("commit transaction", timeout, || {
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            ))
        })
        .await
        .expect_err("its own error");
        assert_eq!(answered.operation(), "commit transaction");
        assert!(!is_fatal(&answered));
        bounded("abort transaction", timeout, || Ok(()))
            .await
            .expect("returned in time");
    }

    #[test]
    fn renews_after_fatal_errors_but_not_a_second_fencing_within_a_minute() {
        let kafka = |code| Error::kafka("commit transaction")(KafkaError::MessageProduction(code));
        let (fenced, fatal) = (
            kafka(RDKafkaErrorCode::Fenced),
            kafka(RDKafkaErrorCode::Fatal),
        );
        let transient = kafka(RDKafkaErrorCode::MessageTimedOut);
        let start = Instant::now();
        let mut policy = RenewPolicy::default();
        assert!(
            !policy.allows(&transient, start),
            "not fatal: abort and retry"
        );
        assert!(policy.allows(&fatal, start));
        assert!(policy.allows(&fenced, start));
        policy.record(&fenced, start);
        let soon = start + Duration::from_secs(5);
        assert!(
            !policy.allows(&fenced, soon),
            "fenced again: another instance"
        );
        assert!(
            policy.allows(&fatal, soon),
            "other fatal errors still renew"
        );
        let later = start + Duration::from_secs(61);
        assert!(policy.allows(&fenced, later));
    }

    /// A commit whose answer comes after the call's timeout: librdkafka
    /// keeps it in progress, and it must be resumed (an abort is refused
    /// with `Conflict`, and so is every later transaction).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_commit_answered_after_its_timeout_is_resumed_to_its_end() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::mocking::MockCluster;

        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        cluster.create_topic("in", 1, 1).expect("topic");
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", cluster.bootstrap_servers());
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", "resume")
            .create()
            .expect("consumer");
        let group = consumer.group_metadata().expect("group metadata");
        config.set("transactional.id", "resume");
        let mut producer = TransactionalProducer::new(&config, Duration::from_secs(1))
            .await
            .expect("producer");

        let mut transaction = producer.begin().expect("begin");
        transaction
            .send(BaseRecord::to("out").key("k").payload("v"))
            .expect("send");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("in", 0, rdkafka::Offset::Offset(1))
            .expect("offset");
        transaction
            .send_offsets(offsets, group)
            .await
            .expect("send offsets");
        transaction.await_deliveries().await.expect("delivered");
        cluster
            .broker_round_trip_time(1, Duration::from_millis(1500))
            .expect("slow broker");
        transaction.commit().await.expect("commit resumed");
        cluster
            .broker_round_trip_time(1, Duration::ZERO)
            .expect("fast broker");
        producer
            .begin()
            .expect("a later transaction")
            .abort()
            .await
            .expect("abort");
    }
}
