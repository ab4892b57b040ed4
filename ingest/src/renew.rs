//! The producer, replaced when Kafka has been unreachable for too long.
//!
//! librdkafka 2.12 forgets a broker missing from a metadata response; a
//! broker coming back from a stall answers metadata before it has
//! re-registered, listing no broker at all, and a client whose only broker
//! was dropped never asks again (librdkafka #5301, #5511; seen here after
//! Kafka was frozen for 60 s: every produce timed out for minutes after
//! Kafka was back, the re-bootstrap never ran). A new client bootstraps
//! afresh, so ingest replaces its producer once the readiness probe has
//! failed for `lumen_runtime::kafka::KAFKA_LOST_AFTER`; requests waiting on
//! the old one get its failures (503), none is answered 202 without Kafka's
//! acknowledgement.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use crate::produce::{ProduceError, Producer, Record};

/// A producer that can be swapped for a fresh one while requests use it.
pub struct RenewableProducer<P> {
    current: RwLock<Arc<P>>,
}

impl<P> RenewableProducer<P> {
    /// Starts with `producer`.
    pub fn new(producer: P) -> Self {
        Self {
            current: RwLock::new(Arc::new(producer)),
        }
    }

    /// The producer requests send to now.
    pub fn current(&self) -> Arc<P> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `producer` in place and hands back the one it replaces: the
    /// caller drops it off the async runtime (dropping a librdkafka producer
    /// purges its queue and joins its thread). Requests still waiting on the
    /// old one keep it alive until its records are settled.
    pub fn replace(&self, producer: P) -> Arc<P> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, Arc::new(producer))
    }
}

impl<P: Producer> Producer for RenewableProducer<P> {
    fn send_all(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), ProduceError>> + Send {
        let producer = self.current();
        async move { producer.send_all(records).await }
    }

    fn queue_depth(&self) -> usize {
        self.current().queue_depth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::RecordingProducer;

    fn record() -> Record {
        Record {
            key: "site".into(),
            payload: vec![1],
        }
    }

    #[tokio::test]
    async fn requests_go_to_the_replacement_while_earlier_ones_keep_the_old() {
        let renewable = RenewableProducer::new(RecordingProducer::default());
        let old = renewable.current();
        renewable.send_all(vec![record()]).await.expect("sent");
        let replaced = renewable.replace(RecordingProducer::default());
        assert!(Arc::ptr_eq(&old, &replaced));
        renewable
            .send_all(vec![record(), record()])
            .await
            .expect("sent");
        assert_eq!(old.sent().len(), 1);
        assert_eq!(renewable.current().sent().len(), 2);
    }
}
