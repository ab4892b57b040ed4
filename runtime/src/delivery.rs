//! Acknowledgements of records sent together (one ingest request, one
//! enrich transaction): one counter and first-failure slot that every
//! record of the group carries as its delivery opaque, settled by
//! librdkafka's delivery reports. rdkafka's `FutureProducer` allocated a
//! channel and a box per record and woke its awaiter once per record; this
//! is one allocation per group and one wake-up when it is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use tokio::sync::Notify;

/// The records of a group not yet settled, and the first failure among
/// them.
#[derive(Debug, Default)]
pub struct Acks {
    remaining: AtomicUsize,
    failure: Mutex<Option<KafkaError>>,
    /// Woken when `remaining` drops to zero or a record fails. It may drop
    /// to zero many times while a group is still being sent: waiters check
    /// again after each wake-up.
    done: Notify,
}

impl Acks {
    /// `count` records are about to be enqueued: counted before librdkafka
    /// can report them.
    pub fn add(&self, count: usize) {
        self.remaining.fetch_add(count, Ordering::AcqRel);
    }

    /// `count` records will never be reported again: acknowledged, failed
    /// with `failure`, or refused by the queue.
    pub fn settle(&self, count: usize, failure: Option<&KafkaError>) {
        if let Some(error) = failure {
            self.failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| error.clone());
        }
        if self.remaining.fetch_sub(count, Ordering::AcqRel) == count || failure.is_some() {
            // A stored permit if nobody waits yet.
            self.done.notify_one();
        }
    }

    /// The first failure reported, if any.
    pub fn failure(&self) -> Option<KafkaError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves once every record counted so far is settled, failed or not.
    pub async fn all_settled(&self) {
        loop {
            // Registered before the check, so a wake-up in between is kept.
            let notified = self.done.notified();
            if self.remaining.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once every record counted so far is acknowledged, or with
    /// the first failure without waiting for the others.
    pub async fn acknowledged(&self) -> Result<(), KafkaError> {
        loop {
            let notified = self.done.notified();
            if let Some(error) = self.failure() {
                return Err(error);
            }
            if self.remaining.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            notified.await;
        }
    }
}

/// A producer context whose delivery reports settle each record's
/// [`Acks`].
pub struct AckReports;

impl ClientContext for AckReports {}

impl ProducerContext for AckReports {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        acks.settle(1, result.as_ref().err().map(|(error, _)| error));
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::RDKafkaErrorCode;

    use super::*;

    fn timed_out() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    }

    /// The count may drop to zero while a group is still being sent
    /// (librdkafka caught up): the permit that leaves must not let a
    /// waiter through before the later records are acknowledged.
    #[tokio::test]
    async fn acknowledged_waits_for_every_record_and_stops_at_a_failure() {
        let acks = Arc::new(Acks::default());
        acks.add(1);
        acks.settle(1, None);
        acks.add(1);
        let waiting = tokio::spawn({
            let acks = Arc::clone(&acks);
            async move { acks.acknowledged().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one record still in flight");
        acks.settle(1, None);
        waiting.await.expect("task").expect("all delivered");

        acks.add(2);
        acks.settle(1, Some(&timed_out()));
        let failure = acks.acknowledged().await.expect_err("a record failed");
        assert_eq!(
            failure.rdkafka_error_code(),
            Some(RDKafkaErrorCode::MessageTimedOut),
            "reported without waiting for the other record"
        );
    }

    #[tokio::test]
    async fn all_settled_waits_for_failed_and_refused_records_too() {
        let acks = Arc::new(Acks::default());
        acks.add(3);
        acks.settle(1, Some(&timed_out()));
        let waiting = tokio::spawn({
            let acks = Arc::clone(&acks);
            async move { acks.all_settled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "two records unsettled");
        // Two refused by the queue at once.
        acks.settle(2, None);
        waiting.await.expect("task");
        assert!(acks.failure().is_some());
    }
}
