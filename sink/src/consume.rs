//! The consumer loop: reads `lumen.enriched` (read_committed, consumer group,
//! manual commits), batches the records undecoded per partition
//! (`batch.rs`), and runs at most one delivery per partition at a time:
//! record the batch's range as an intent in the committed offset's
//! metadata, decode and insert (`decode.rs`, `insert.rs`), send what did not
//! become a row to the dead-letter topic (`dlq.rs`), and only then commit
//! the offset after the batch.
//!
//! Memory is bounded: while the records held reach `--max-buffered-rows`
//! (or the bytes budget), the loop stops taking messages, and librdkafka's
//! own prefetch queue, bounded too, stops fetching. Taking resumes as soon
//! as an insert is acknowledged; replayed batches, which cannot be cut
//! early, are read to their ends past it. Only if the budget stays reached
//! for [`PAUSE_AFTER`] (ClickHouse down or slow) are the partitions paused, so
//! that polling can go on and the group membership survives the outage:
//! librdkafka fetches a resumed partition only when its broker thread next
//! wakes, up to a second later, and drops what it had prefetched, which
//! made pausing at every full budget cost a backlog drain half its rate.
//!
//! Rebalances discard and rewind: a revoked partition's buffered records are
//! dropped and its delivery aborted; whoever owns it next reads from the
//! committed offset, replays the recorded intent with the same deduplication
//! token, and nothing is lost or doubled. A consumer whose group calls stop
//! returning is replaced the same way: everything of it is discarded, it is
//! unsubscribed and never polled again, and a new consumer joins the group.
//! On shutdown, everything read is sealed and delivered within the shutdown
//! budget.
//!
//! A record whose event id is among its partition's recent ones is passed
//! over (counted, committed with its batch, not written): a Kafka
//! transaction whose abort marker never reached a partition leaves its
//! records there for read_committed readers, and the transaction that
//! processed the same input again adds them a second time (seen after a
//! 60 s Kafka freeze; see `README.md`). Before a partition's first batch,
//! the ids of the records just before its start are read back from Kafka,
//! so a copy straddling a restart or a rebalance is caught too.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use futures_core::Stream;
use lumen_runtime::dedupe::{Dedupe, EventDigest};
use lumen_runtime::reader::RangeReader;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::task::{AbortHandle, JoinError, JoinSet};

use crate::batch::{Batch, Batcher, Bounds, Held, Intent};
use crate::decode::Consumed;
use crate::dlq::{DeadLetter, DeadLetters};
use crate::error::{Error, Result};
use crate::insert::{Table, Writer};
use crate::metrics::Metrics;

/// How long a blocking Kafka group call (commit, committed offsets) may take.
const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a group call may go unanswered before the consumer is given up
/// on. A synchronous commit has no timeout: librdkafka defers it until the
/// group coordinator is back, and after a broker restart a consumer's group
/// state was seen never to come back (every partition's intent commit
/// waiting for over three minutes while fetching went on). As long as a
/// group may go without a coordinator, for the same reason.
const CONSUMER_STUCK_AFTER: Duration = lumen_runtime::kafka::KAFKA_LOST_AFTER;

/// How long the loop may stop taking messages at the budget before it
/// pauses the partitions and polls again: well within librdkafka's
/// `max.poll.interval.ms` (5 minutes), and long enough that inserts of a
/// draining backlog (a few hundred milliseconds each) free the budget first.
const PAUSE_AFTER: Duration = Duration::from_secs(2);

/// How long a rebalance waits for the outgoing assignment's intent commits.
/// They normally take milliseconds; a commit deferred while the group
/// coordinator is away was seen never to return while the rebalance
/// callback waited for it (librdkafka did not serve it until the callback
/// returned), which froze the sink for good.
const REBALANCE_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// What the rebalance callback saw, for the loop to apply in order.
#[derive(Debug)]
enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// The consumer's context: records rebalances, numbers assignments and
/// exports lag.
pub struct SinkContext {
    topic: String,
    events: Mutex<Vec<RebalanceEvent>>,
    /// Whether `events` may hold any: read for every message polled, where
    /// locking `events` each time would cost more than the rest of a
    /// poll's bookkeeping.
    events_pending: AtomicBool,
    /// The assignment's number and its intent commits in flight. A commit
    /// only starts if its batch was read in the current assignment: one
    /// issued after the partition was handed over (by a delivery task
    /// aborted while its blocking commit waited for a thread) would move
    /// the new owner's committed offset back to a stale intent.
    assignment: Mutex<Assignment>,
    /// Signalled whenever an intent commit returns.
    commit_returned: Condvar,
    /// Set when the consumer must be replaced: a rebalance could not wait
    /// out the outgoing assignment's commits (the rebalance is left
    /// unfinished: a commit still pending must not land in the next
    /// assignment), a group call never returned, or the group has had no
    /// coordinator for too long.
    stuck: AtomicBool,
    /// How long the group has been without a coordinator.
    group: lumen_runtime::kafka::GroupWatch,
    /// Logs the consumer's errors, polled or the client's own.
    errors: lumen_runtime::kafka::ConsumerErrors,
    metrics: Metrics,
}

/// See [`SinkContext::assignment`].
#[derive(Default)]
struct Assignment {
    /// Bumped by every rebalance before librdkafka changes the assignment.
    generation: u64,
    /// Intent commits in flight.
    commits: usize,
    /// A rebalance waits for the commits in flight; no new one may start.
    closing: bool,
}

/// Counts an intent commit in flight for as long as it lives.
struct InFlight<'a>(&'a SinkContext);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut assignment) = self.0.assignment.lock() {
            assignment.commits -= 1;
        }
        self.0.commit_returned.notify_all();
    }
}

impl SinkContext {
    fn new(topic: &str, metrics: Metrics) -> Self {
        Self {
            topic: topic.to_owned(),
            events: Mutex::new(Vec::new()),
            events_pending: AtomicBool::new(false),
            assignment: Mutex::new(Assignment::default()),
            commit_returned: Condvar::new(),
            stuck: AtomicBool::new(false),
            group: lumen_runtime::kafka::GroupWatch::default(),
            errors: lumen_runtime::kafka::ConsumerErrors::default(),
            metrics,
        }
    }

    /// Runs `commit` if the assignment numbered `assignment` is still the
    /// current one and no rebalance is waiting to end it; `None` otherwise,
    /// or once the consumer is stuck.
    fn while_assigned<R>(&self, assignment: u64, commit: impl FnOnce() -> R) -> Option<R> {
        let in_flight = {
            let mut current = self.assignment.lock().ok()?;
            if current.generation != assignment || current.closing || self.is_stuck() {
                return None;
            }
            current.commits += 1;
            InFlight(self)
        };
        let result = commit();
        drop(in_flight);
        Some(result)
    }

    /// Ends the current assignment once its commits in flight have
    /// returned (none starts meanwhile), waiting for them at most `within`;
    /// `false`, and the consumer is stuck for good, if they have not.
    fn close_assignment(&self, within: Duration) -> bool {
        let Ok(mut current) = self.assignment.lock() else {
            self.give_up();
            return false;
        };
        if self.is_stuck() {
            return false;
        }
        current.closing = true;
        let Ok((mut current, _)) =
            self.commit_returned
                .wait_timeout_while(current, within, |current| current.commits > 0)
        else {
            self.give_up();
            return false;
        };
        current.closing = false;
        if current.commits > 0 {
            self.give_up();
            return false;
        }
        current.generation += 1;
        true
    }

    /// Marks the consumer for replacement, for good.
    fn give_up(&self) {
        self.stuck.store(true, Ordering::SeqCst);
    }

    /// Whether the consumer must be replaced.
    fn is_stuck(&self) -> bool {
        self.stuck.load(Ordering::SeqCst)
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    fn push(&self, event: RebalanceEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
            self.events_pending.store(true, Ordering::Release);
        }
    }

    fn assignment(&self) -> u64 {
        self.assignment
            .lock()
            .map_or(0, |assignment| assignment.generation)
    }

    fn take(&self) -> Vec<RebalanceEvent> {
        if !self.events_pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.events
            .lock()
            .map(|mut events| {
                self.events_pending.store(false, Ordering::Release);
                std::mem::take(&mut *events)
            })
            .unwrap_or_default()
    }
}

impl ClientContext for SinkContext {
    /// The client's own errors, logged like the polled ones: each kind
    /// at most every 10 s, and no partition ends, which
    /// `enable.partition.eof` reports here too, at a steady rate on every
    /// fetch (the loop acts on them: `Sink::reached_end`).
    fn error(&self, error: KafkaError, _reason: &str) {
        self.errors.log(&error);
    }

    fn stats(&self, statistics: Statistics) {
        self.group.observe(&statistics);
        if self.group.lost() {
            self.give_up();
        }
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (partition, stats) in &topic.partitions {
            // Partition -1 is librdkafka's internal queue; lag is -1 until known.
            if *partition >= 0 && stats.consumer_lag >= 0 {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&partition.to_string()])
                    .set(stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    // Runs on the task polling the consumer, inside `recv()`: the loop sees
    // the event before the first record of the new assignment. Replaces
    // rdkafka's default to be able to leave the rebalance unfinished.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        event: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        // Intent commits in flight belong to the outgoing assignment, and
        // none may start until it has changed.
        if !self.close_assignment(REBALANCE_COMMIT_WAIT) {
            tracing::error!(
                waited = ?REBALANCE_COMMIT_WAIT,
                "intent commits of the outgoing assignment did not return; leaving the rebalance to the consumer's replacement"
            );
            return;
        }
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match event {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.push(RebalanceEvent::Assigned(self.partitions(list)));
                if cooperative {
                    consumer.incremental_assign(list)
                } else {
                    consumer.assign(list)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.push(RebalanceEvent::Revoked(self.partitions(list)));
                if cooperative {
                    consumer.incremental_unassign(list)
                } else {
                    consumer.unassign()
                }
            }
            error => {
                tracing::warn!(error = %RDKafkaErrorCode::from(error), "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(error) = applied {
            tracing::warn!(%error, "cannot apply the rebalance");
        }
    }
}

/// The sink's consumer.
pub type SinkConsumer = StreamConsumer<SinkContext>;

/// What a consumer is made from, kept to replace one that stopped answering.
pub struct Subscription {
    /// The brokers and client options.
    pub kafka: lumen_runtime::KafkaConfig,
    /// The consumer group.
    pub group: String,
    /// The topic read.
    pub topic: String,
    /// Metrics (lag).
    pub metrics: Metrics,
}

impl Subscription {
    /// Creates a consumer and subscribes it to the topic.
    pub fn subscribe(&self) -> Result<Arc<SinkConsumer>> {
        let context = SinkContext::new(&self.topic, self.metrics.clone());
        let consumer: SinkConsumer = self
            .kafka
            .client_config(&[
                ("group.id", &self.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                ("statistics.interval.ms", "5000"),
                // librdkafka prefetches up to 64 MiB by default, on top of
                // the batches; a sink catching up needs far less to stay busy:
                // 4 MiB is ~0.1 s of reading at full speed, and took 28 MiB
                // off the sink's peak RSS against 16 MiB (`make bench-sink`,
                // 1M rows: 71.0 against 99.0 MiB, rows/s unchanged).
                ("queued.max.messages.kbytes", "4096"),
                // With that smaller queue, the default 1 s pause of a
                // partition's fetching whenever the queue is full left reading
                // idle between bursts (`make bench-sink`, 1M rows: 45 500
                // rows/s with 20 ms, 41 500 with 1 s).
                ("fetch.queue.backoff.ms", "20"),
                // The end of a backlog cuts its last batch (`reached_end`).
                ("enable.partition.eof", "true"),
                // librdkafka reports a partition's end only from a fetch
                // that returns nothing for it, and the broker holds a fetch
                // with nothing for any partition this long: the partition
                // read to its end last waited up to the default 500 ms for
                // its cut (0.3–0.5 s in `make bench-sink`, of a 5 s run).
                ("fetch.wait.max.ms", "100"),
            ])
            .create_with_context(context)
            .map_err(Error::kafka("create consumer"))?;
        consumer
            .subscribe(&[&self.topic])
            .map_err(Error::kafka("subscribe"))?;
        Ok(Arc::new(consumer))
    }
}

/// Gives up on a consumer without waiting for it: unsubscribed, then
/// unassigned (finishing a rebalance left open), it leaves the group and
/// does not rejoin it should its group state recover. It is never polled
/// again (its rebalance callback would wait for the stuck commit) and is
/// dropped, on a blocking thread, when its last stuck call returns.
fn retire(consumer: Arc<SinkConsumer>) {
    tokio::spawn(async move {
        let leave = move || {
            consumer.unsubscribe();
            consumer.unassign()
        };
        match lumen_runtime::kafka::call_within(KAFKA_CALL_TIMEOUT, leave).await {
            Some(Ok(())) => {}
            Some(Err(error)) => tracing::warn!(%error, "the replaced consumer cannot unassign"),
            None => tracing::warn!("the replaced consumer did not leave in time"),
        }
    });
}

/// Messages taken in one go by [`Sink::take_ready`]: at ~50 000 records/s,
/// a burst is at most a few tens of milliseconds of reading.
const BURST: usize = 1_000;

/// What became of a polled message.
enum Taken {
    /// Added to its partition's open batch, which it may have sealed.
    Added { sealed: bool },
    /// The first of its partition, still to be accepted.
    First(First),
    /// An error, or a message of a consumer given up on.
    Nothing,
}

/// A partition's first message, copied out of librdkafka's buffer.
struct First {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// What a delivery task hands back.
struct Delivered {
    partition: i32,
    epoch: u64,
    last_offset: i64,
}

/// Everything a delivery task needs, shared by all of them.
pub struct Delivery<T, D> {
    /// Inserts batches.
    pub writer: Writer<T>,
    /// Sends dead letters.
    pub dead_letters: D,
    /// The topic read.
    pub topic: String,
    /// Metrics.
    pub metrics: Metrics,
}

struct PartitionState {
    epoch: u64,
    /// The consumer's assignment generation this state was read in.
    assignment: u64,
    batcher: Batcher,
    in_flight: Option<(AbortHandle, Held)>,
    paused: bool,
    /// Records read since the partition was last read to its end.
    read_since_end: usize,
}

/// The loop's state.
pub struct Sink<T, D> {
    consumer: Arc<SinkConsumer>,
    subscription: Subscription,
    delivery: Arc<Delivery<T, D>>,
    bounds: Bounds,
    budget: Held,
    partitions: HashMap<i32, PartitionState>,
    /// Recent event ids per partition.
    dedupe: Dedupe,
    tasks: JoinSet<Option<Delivered>>,
    next_epoch: u64,
    /// Offsets acknowledged and committed asynchronously, committed again
    /// synchronously at shutdown.
    acked: HashMap<i32, i64>,
    /// Since when the records held reach the budget.
    full_since: Option<Instant>,
    /// Counted since the metrics were last told.
    counts: Counts,
}

/// What the consume loop counted since it last published its metrics, in
/// plain integers, published once per turn of the loop. Three locked adds
/// per record (this count and the buffered gauges) were where perf charged
/// 8% of the sink's CPU in `make bench-sink`'s (a): the first locked
/// instruction after the payload copy waits for it. Without them the wait
/// moves to librdkafka's release of the message, so the gain is smaller
/// (+1% rows/s in (a) over 12 interleaved rounds).
#[derive(Debug, Default)]
struct Counts {
    /// Records read.
    read: u64,
    /// Records passed over as duplicates.
    duplicates: u64,
}

impl<T: Table, D: DeadLetters> Sink<T, D> {
    /// A loop reading through a consumer of `subscription`, batching within
    /// `bounds`, holding at most about `budget` read and not yet inserted,
    /// and passing over a record whose event id is among the
    /// `dedupe_window` before it in its partition.
    pub fn new(
        delivery: Delivery<T, D>,
        subscription: Subscription,
        bounds: Bounds,
        budget: Held,
        dedupe_window: usize,
    ) -> Result<Self> {
        Ok(Self {
            consumer: subscription.subscribe()?,
            subscription,
            delivery: Arc::new(delivery),
            bounds,
            budget,
            partitions: HashMap::new(),
            dedupe: Dedupe::new(dedupe_window),
            tasks: JoinSet::new(),
            next_epoch: 0,
            acked: HashMap::new(),
            full_since: None,
            counts: Counts::default(),
        })
    }

    /// Runs until `shutdown` fires, then delivers what was read within
    /// `shutdown_timeout`.
    pub async fn run(mut self, shutdown: lumen_runtime::Shutdown, shutdown_timeout: Duration) {
        let mut tick = tokio::time::interval(
            (self.bounds.max_age / 4).clamp(Duration::from_millis(5), Duration::from_millis(100)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.apply_rebalances();
            if self.consumer.context().is_stuck() {
                self.replace_consumer().await;
                continue;
            }
            self.dispatch();
            let held = self.held();
            self.publish_metrics(held);
            self.flow_control(held);
            let consumer = self.consumer.clone();
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => self.delivered(joined),
                message = consumer.recv(), if self.taking() => {
                    let first = match self.take(message, Instant::now()) {
                        Taken::First(first) => Some(first),
                        Taken::Added { sealed: false } => self.take_ready(&consumer),
                        Taken::Added { sealed: true } | Taken::Nothing => None,
                    };
                    if let Some(first) = first {
                        self.accept_first(first).await;
                    }
                }
                _ = tick.tick() => self.seal_due(),
            }
        }
        self.drain(shutdown_timeout).await;
    }

    /// Discards everything read through the stuck consumer, retires it and
    /// subscribes a new one, which reads again from the committed offsets
    /// once the group has assigned it the partitions.
    async fn replace_consumer(&mut self) {
        let fresh = match self.subscription.subscribe() {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::error!(%error, "cannot create a consumer to replace the stuck one; retrying");
                tokio::time::sleep(KAFKA_CALL_TIMEOUT).await;
                return;
            }
        };
        tracing::error!(
            "the consumer's group calls did not return in time; replacing it (uncommitted records will be read again)"
        );
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            self.discard(partition);
        }
        self.tasks = JoinSet::new();
        retire(std::mem::replace(&mut self.consumer, fresh));
        self.delivery.metrics.consumer_replacements.inc();
    }

    fn apply_rebalances(&mut self) {
        for event in self.consumer.context().take() {
            match event {
                RebalanceEvent::Revoked(partitions) => {
                    for partition in partitions {
                        self.discard(partition);
                    }
                }
                RebalanceEvent::Assigned(partitions) => {
                    tracing::info!(?partitions, "partitions assigned");
                    for &partition in &partitions {
                        // A fresh start from the committed offset.
                        self.discard(partition);
                    }
                    self.resume_all(&partitions);
                }
            }
        }
    }

    /// Resumes newly assigned partitions: librdkafka keeps a partition the
    /// application paused paused across a rebalance, and a fresh start has
    /// nothing waiting, so a pause from the previous assignment would stop
    /// the partition for good (its state is only created by a first record).
    fn resume_all(&self, partitions: &[i32]) {
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            list.add_partition(&self.delivery.topic, partition);
        }
        if let Err(error) = self.consumer.resume(&list) {
            tracing::warn!(%error, ?partitions, "cannot resume the assigned partitions");
        }
    }

    /// Drops what was read from `partition` and not committed; the next
    /// owner reads it again.
    fn discard(&mut self, partition: i32) {
        if let Some(state) = self.partitions.remove(&partition) {
            if let Some((handle, _)) = state.in_flight {
                handle.abort();
            }
            if state.paused {
                self.delivery.metrics.paused_partitions.dec();
            }
            tracing::info!(
                partition,
                "partition revoked; uncommitted records will be read again"
            );
        }
        self.dedupe.drop_partition(partition);
        self.acked.remove(&partition);
    }

    /// Adds a polled message to its partition's open batch, copying it out
    /// of librdkafka's buffer. The first message of a partition is returned
    /// instead, copied: the partition's batcher needs its committed intent
    /// first, which takes an await, and a message borrowed from librdkafka
    /// is not held across one.
    fn take(&mut self, message: Result<BorrowedMessage<'_>, KafkaError>, now: Instant) -> Taken {
        // The rebalance callback may have run inside this very poll.
        self.apply_rebalances();
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                self.reached_end(partition);
                return Taken::Nothing;
            }
            Err(error) => {
                self.consumer.context().errors.log(&error);
                return Taken::Nothing;
            }
        };
        if self.consumer.context().is_stuck() {
            return Taken::Nothing;
        }
        let (key, payload) = (message.key(), message.payload().unwrap_or_default());
        let Some(state) = self.partitions.get_mut(&message.partition()) else {
            return Taken::First(First {
                partition: message.partition(),
                offset: message.offset(),
                key: key.map(<[u8]>::to_vec),
                payload: payload.to_vec(),
            });
        };
        let record = Consumed {
            offset: message.offset(),
            key,
            payload,
        };
        state.read_since_end += 1;
        let sealed = admit(
            &mut state.batcher,
            &mut self.dedupe,
            &mut self.counts,
            message.partition(),
            record,
            now,
        );
        Taken::Added { sealed }
    }

    /// Takes the messages librdkafka already holds, up to [`BURST`], without
    /// a turn of the loop (its `select!`, a dispatch and flow control) per
    /// message. Stops when none is ready, when a batch is sealed (the loop
    /// dispatches it) or the records held reach the budget (the loop pauses
    /// reading), and at a partition's first message, which is returned.
    fn take_ready(&mut self, consumer: &SinkConsumer) -> Option<First> {
        let mut cx = Context::from_waker(Waker::noop());
        let now = Instant::now();
        let mut held = self.held();
        // One stream for the burst: each `recv()` registers a waker slot
        // and drops it again, two locked calls per message.
        let mut stream = consumer.stream();
        for _ in 0..BURST {
            // Up to the budget: at it, the loop pauses reading.
            if held.reaches(self.budget) {
                return None;
            }
            let Poll::Ready(Some(message)) = Pin::new(&mut stream).poll_next(&mut cx) else {
                return None;
            };
            let bytes = message.as_ref().map_or(0, |m| m.payload_len());
            match self.take(message, now) {
                Taken::Added { sealed: false } => {
                    held += Held::record(bytes);
                }
                Taken::Added { sealed: true } | Taken::Nothing => return None,
                Taken::First(first) => return Some(first),
            }
        }
        None
    }

    /// Starts the state of a partition with its first message.
    async fn accept_first(&mut self, first: First) {
        let partition = first.partition;
        let replay = self.read_intent(partition).await;
        if self.consumer.context().is_stuck()
            || !self.restore_recent_ids(partition, first.offset).await
        {
            return;
        }
        if let Some(intent) = replay {
            tracing::info!(
                partition,
                ?intent,
                "replaying the batch recorded before the last owner stopped"
            );
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let mut batcher = Batcher::new(partition, self.bounds, replay);
        let record = Consumed {
            offset: first.offset,
            key: first.key.as_deref(),
            payload: &first.payload,
        };
        admit(
            &mut batcher,
            &mut self.dedupe,
            &mut self.counts,
            partition,
            record,
            Instant::now(),
        );
        self.partitions.insert(
            partition,
            PartitionState {
                epoch,
                assignment: self.consumer.context().assignment(),
                batcher,
                in_flight: None,
                paused: false,
                read_since_end: 1,
            },
        );
    }

    /// The intent in `partition`'s committed offset, retried until Kafka
    /// answers (guessing would risk a different cut, hence duplicates) or
    /// the consumer is given up on (`None` then too).
    async fn read_intent(&self, partition: i32) -> Option<Intent> {
        let consumer = self.consumer.clone();
        let topic = self.delivery.topic.clone();
        let read =
            move || {
                let mut list = TopicPartitionList::new();
                list.add_partition(&topic, partition);
                let committed = consumer.committed_offsets(list, KAFKA_CALL_TIMEOUT)?;
                Ok::<_, KafkaError>(committed.find_partition(&topic, partition).and_then(
                    |element| {
                        let intent = Intent::decode(element.metadata())?;
                        (element.offset() == Offset::Offset(intent.first_offset)).then_some(intent)
                    },
                ))
            };
        self.ask_kafka("committed_offsets", partition, read)
            .await
            .flatten()
    }

    /// Refills `partition`'s recent event ids from the records just before
    /// `start`, its first offset read. `false` if the consumer was given up
    /// on meanwhile: a partition started without them could write a copy
    /// again.
    async fn restore_recent_ids(&mut self, partition: i32, start: i64) -> bool {
        self.dedupe.drop_partition(partition);
        if start == 0 {
            return true;
        }
        let kafka = self.subscription.kafka.clone();
        let client_id = format!("{}-recent-ids", self.subscription.group);
        let topic = self.delivery.topic.clone();
        let window = self.dedupe.capacity();
        let read = move || {
            let reader = RangeReader::new(&kafka, &client_id, KAFKA_CALL_TIMEOUT)?;
            let mut ids = Vec::new();
            let before = HashMap::from([(partition, start)]);
            reader.tails(&topic, &before, window, |_, payload| {
                ids.extend(lumen_schemas::codec::event_id(payload).map(EventDigest::of));
            })?;
            Ok::<_, lumen_runtime::reader::ReadError>(ids)
        };
        let Some(ids) = self.ask_kafka("recent_ids", partition, read).await else {
            return false;
        };
        tracing::debug!(
            partition,
            start,
            ids = ids.len(),
            "recent event ids read back"
        );
        for id in ids {
            self.dedupe.remember(partition, id);
        }
        true
    }

    /// Runs the blocking Kafka call `call` until it succeeds, retrying
    /// failures (counted under `reason`) after a backoff. `None` once the
    /// consumer is given up on: the call did not return, or did not
    /// succeed, within [`CONSUMER_STUCK_AFTER`].
    async fn ask_kafka<R, E>(
        &self,
        reason: &'static str,
        partition: i32,
        call: impl FnOnce() -> std::result::Result<R, E> + Clone + Send + 'static,
    ) -> Option<R>
    where
        R: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let mut delays = self.delivery.writer.backoff().build();
        let started = Instant::now();
        loop {
            match lumen_runtime::kafka::call_within(CONSUMER_STUCK_AFTER, call.clone()).await {
                Some(Ok(answer)) => return Some(answer),
                Some(Err(error)) => {
                    self.delivery
                        .metrics
                        .retries
                        .with_label_values(&[reason])
                        .inc();
                    tracing::warn!(%error, partition, reason, "Kafka call failed; retrying");
                }
                // Not returned within the bound: given up on just below.
                None => {}
            }
            if started.elapsed() >= CONSUMER_STUCK_AFTER {
                self.consumer.context().give_up();
                return None;
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
        }
    }

    /// `partition` was read to its end. If that ended a backlog of at least
    /// a batch, its open batch is cut now: nothing more is coming soon to
    /// fill it, and waiting out its age would leave ClickHouse idle at the
    /// end of every catch-up (ClickHouse's Kafka engine inserts whenever a
    /// poll comes back empty). Read to the end in small steps, as at a steady
    /// rate, the batch still fills by size or age: an insert per poll would
    /// be a part per table each time.
    fn reached_end(&mut self, partition: i32) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            if state.read_since_end >= self.bounds.max_rows {
                state.batcher.cut();
            }
            state.read_since_end = 0;
        }
    }

    fn seal_due(&mut self) {
        let now = Instant::now();
        for state in self.partitions.values_mut() {
            state.batcher.seal_if_due(now);
        }
    }

    /// Starts a delivery for every partition with a sealed batch and none in
    /// flight.
    fn dispatch(&mut self) {
        for state in self.partitions.values_mut() {
            if state.in_flight.is_some() {
                continue;
            }
            if let Some(batch) = state.batcher.take_sealed() {
                let held = batch.held();
                let handle = self.tasks.spawn(deliver(
                    self.delivery.clone(),
                    self.consumer.clone(),
                    batch,
                    state.epoch,
                    state.assignment,
                ));
                state.in_flight = Some((handle, held));
            }
        }
    }

    /// What was read and not yet acknowledged: buffered or in flight.
    fn held(&self) -> Held {
        self.partitions
            .values()
            .map(|state| {
                state.batcher.held()
                    + state
                        .in_flight
                        .as_ref()
                        .map_or(Held::default(), |(_, held)| *held)
            })
            .sum()
    }

    /// Whether the loop takes messages: not while what is held reaches the
    /// budget, unless the partitions are paused by then (polling a paused
    /// consumer serves its rebalances and errors and yields no record).
    fn taking(&self) -> bool {
        self.full_since.is_none() || self.partitions.values().all(|state| state.paused)
    }

    /// Tells the metrics what was read and passed over since the last
    /// turn, and what is `held`.
    fn publish_metrics(&mut self, held: Held) {
        let metrics = &self.delivery.metrics;
        let counts = std::mem::take(&mut self.counts);
        metrics.records_consumed.inc_by(counts.read);
        metrics.duplicates.inc_by(counts.duplicates);
        metrics.buffered(held);
    }

    /// Notes whether `held` reaches the budget; pauses every partition
    /// once it has for [`PAUSE_AFTER`], and resumes them when it no longer
    /// does. At the budget, idle partitions' open batches are cut and
    /// inserted at once: reading has stopped, so they would otherwise only
    /// fill up by age.
    ///
    /// Only deliveries free the budget. With none under way once the idle
    /// batches are cut, what is held is replays, which cannot be cut before
    /// the end their intents say: reading then goes on past the budget, by
    /// at most the replayed ranges (stopping it there stalled the sink for
    /// good when a replay alone was more than the budget).
    fn flow_control(&mut self, held: Held) {
        let reached = held.reaches(self.budget);
        if reached {
            for state in self.partitions.values_mut() {
                if state.in_flight.is_none() && state.batcher.waiting() == 0 {
                    state.batcher.cut();
                }
            }
            self.dispatch();
        }
        let full = reached
            && self
                .partitions
                .values()
                .any(|state| state.in_flight.is_some());
        self.full_since = if full {
            Some(self.full_since.unwrap_or_else(Instant::now))
        } else {
            None
        };
        let behind = self
            .full_since
            .is_some_and(|since| since.elapsed() >= PAUSE_AFTER);
        for (partition, state) in &mut self.partitions {
            if behind == state.paused {
                continue;
            }
            let mut list = TopicPartitionList::new();
            list.add_partition(&self.delivery.topic, *partition);
            let result = if behind {
                self.consumer.pause(&list)
            } else {
                self.consumer.resume(&list)
            };
            match result {
                Ok(()) => {
                    state.paused = behind;
                    let gauge = &self.delivery.metrics.paused_partitions;
                    if behind { gauge.inc() } else { gauge.dec() }
                }
                Err(error) => tracing::warn!(%error, partition, behind, "cannot pause or resume"),
            }
        }
    }

    fn delivered(&mut self, joined: Result<Option<Delivered>, JoinError>) {
        let done = match joined {
            Ok(Some(done)) => done,
            // Its partition was reassigned before the intent was recorded,
            // or its consumer was given up on.
            Ok(None) => return,
            // Aborted on revocation or shutdown: the replay covers it.
            Err(error) if error.is_cancelled() => return,
            Err(error) => {
                tracing::error!(%error, "delivery task failed");
                return;
            }
        };
        let Some(state) = self.partitions.get_mut(&done.partition) else {
            return;
        };
        if state.epoch != done.epoch {
            return;
        }
        state.in_flight = None;
        let next = done.last_offset + 1;
        self.acked.insert(done.partition, next);
        // Asynchronous: if it is lost, the next batch's intent commit or, at
        // worst, a deduplicated replay covers it.
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(&self.delivery.topic, done.partition, Offset::Offset(next))
            .is_ok()
            && let Err(error) = self.consumer.commit(&list, CommitMode::Async)
        {
            self.delivery.metrics.commit_failures.inc();
            tracing::warn!(%error, partition = done.partition, "offset commit failed");
        }
    }

    /// Seals everything read and delivers it, within `timeout`; then commits
    /// synchronously what was acknowledged.
    async fn drain(&mut self, timeout: Duration) {
        self.apply_rebalances();
        for state in self.partitions.values_mut() {
            state.batcher.cut();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.dispatch();
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = self.tasks.join_next() => self.delivered(joined),
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("shutdown budget spent; the rest will be read again by the next owner");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        let mut list = TopicPartitionList::new();
        for (partition, next) in &self.acked {
            if list
                .add_partition_offset(&self.delivery.topic, *partition, Offset::Offset(*next))
                .is_err()
            {
                return;
            }
        }
        if list.count() == 0 {
            return;
        }
        let consumer = self.consumer.clone();
        let commit = move || consumer.commit(&list, CommitMode::Sync);
        match lumen_runtime::kafka::call_within(KAFKA_CALL_TIMEOUT, commit).await {
            Some(Ok(())) => tracing::info!("offsets committed at shutdown"),
            Some(Err(error)) => {
                tracing::warn!(%error, "final commit failed; replays are deduplicated")
            }
            None => tracing::warn!("final commit did not return; replays are deduplicated"),
        }
    }
}

/// Adds `record` to its partition's open batch, or passes over it if its
/// event id is among the partition's recent ones; returns whether a batch
/// was sealed. A record without a readable id goes on: it becomes a dead
/// letter when its batch is delivered.
fn admit(
    batcher: &mut Batcher,
    dedupe: &mut Dedupe,
    counts: &mut Counts,
    partition: i32,
    record: Consumed<'_>,
    now: Instant,
) -> bool {
    let waiting = batcher.waiting();
    counts.read += 1;
    let id = lumen_schemas::codec::event_id(record.payload);
    if let Some(digest) = id.map(EventDigest::of)
        && !dedupe.remember(partition, digest)
    {
        batcher.skip(record.offset, now);
        counts.duplicates += 1;
        tracing::info!(
            partition,
            offset = record.offset,
            event_id = id,
            "event already written from a recent record; not written again"
        );
    } else {
        batcher.push(record.offset, record.key, record.payload, now);
    }
    batcher.waiting() > waiting
}

/// One batch, end to end: intent, insert, dead letters. Every step is
/// retried until it succeeds; the task is aborted if the partition goes,
/// and gives up (`None`) if it went before the intent was recorded or the
/// consumer was given up on.
async fn deliver<T: Table, D: DeadLetters>(
    delivery: Arc<Delivery<T, D>>,
    consumer: Arc<SinkConsumer>,
    batch: Batch,
    epoch: u64,
    assignment: u64,
) -> Option<Delivered> {
    let started = Instant::now();
    if !commit_intent(&delivery, &consumer, &batch, assignment).await {
        return None;
    }
    let intent_recorded = started.elapsed();
    let written = delivery
        .writer
        .write(
            batch.partition,
            batch.first_offset,
            batch.last_offset,
            &batch.records,
        )
        .await;
    let mut letters: Vec<DeadLetter> = written
        .undecodable
        .into_iter()
        .chain(written.refused)
        .map(|rejected| {
            let record = batch.records.at(rejected.index);
            DeadLetter {
                partition: batch.partition,
                offset: record.offset,
                key: record.key.map(<[u8]>::to_vec),
                payload: record.payload.to_vec(),
                reason: rejected.reason,
                detail: rejected.detail,
            }
        })
        .collect();
    letters.sort_by_key(|letter| letter.offset);
    send_dead_letters(&delivery, &letters).await;
    tracing::debug!(
        partition = batch.partition,
        records = batch.records.len(),
        ?intent_recorded,
        delivered = ?started.elapsed(),
        "batch delivered"
    );
    Some(Delivered {
        partition: batch.partition,
        epoch,
        last_offset: batch.last_offset,
    })
}

/// Records the batch's range in the committed offset's metadata (committing
/// its first offset, which also commits everything before it), retrying
/// failed commits. Returns `false`, committing nothing, once the
/// partition's assignment `assignment` is over; gives the consumer up if a
/// commit does not return.
async fn commit_intent<T: Table, D: DeadLetters>(
    delivery: &Arc<Delivery<T, D>>,
    consumer: &Arc<SinkConsumer>,
    batch: &Batch,
    assignment: u64,
) -> bool {
    let intent = batch.intent();
    let mut delays = delivery.writer.backoff().build();
    loop {
        let committing = consumer.clone();
        let topic = delivery.topic.clone();
        let partition = batch.partition;
        let result = lumen_runtime::kafka::call_within(CONSUMER_STUCK_AFTER, move || {
            let consumer = committing;
            let mut list = TopicPartitionList::new();
            let mut element = list.add_partition(&topic, partition);
            element.set_metadata(intent.encode());
            if let Err(error) = element.set_offset(Offset::Offset(intent.first_offset)) {
                return Some(Err(error));
            }
            let commit = || consumer.commit(&list, CommitMode::Sync);
            consumer.context().while_assigned(assignment, commit)
        })
        .await;
        match result {
            Some(Some(Ok(()))) => return true,
            Some(None) => return false,
            Some(Some(Err(error))) => {
                delivery
                    .metrics
                    .retries
                    .with_label_values(&["intent_commit"])
                    .inc();
                tracing::warn!(%error, partition = batch.partition, "cannot record the batch intent; retrying");
            }
            None => {
                consumer.context().give_up();
                return false;
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
    }
}

async fn send_dead_letters<T: Table, D: DeadLetters>(
    delivery: &Arc<Delivery<T, D>>,
    letters: &[DeadLetter],
) {
    if letters.is_empty() {
        return;
    }
    let mut delays = delivery.writer.backoff().build();
    loop {
        match delivery.dead_letters.send(letters).await {
            Ok(()) => break,
            Err(error) => {
                delivery.metrics.retries.with_label_values(&["dlq"]).inc();
                tracing::warn!(%error, "cannot send dead letters; retrying");
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
        }
    }
    for letter in letters {
        delivery
            .metrics
            .dlq_rows
            .with_label_values(&[letter.reason])
            .inc();
        tracing::warn!(partition = letter.partition, offset = letter.offset, reason = letter.reason, detail = %letter.detail, "record sent to the dead-letter topic");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Arc<SinkContext> {
        Arc::new(SinkContext::new("t", Metrics::new().expect("metrics")))
    }

    #[test]
    fn a_record_whose_event_id_was_just_admitted_is_passed_over() {
        let mut counts = Counts::default();
        let codec = lumen_schemas::Codec::<lumen_schemas::EnrichedEvent>::new().expect("codec");
        let [first, other] = [1, 2].map(|n| {
            codec
                .encode(&crate::row::sample::event(n, 1_700_000_000_000))
                .expect("encode")
        });
        let bounds = Bounds {
            max_rows: 10,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(1),
        };
        let mut batcher = Batcher::new(0, bounds, None);
        let mut dedupe = Dedupe::new(10);
        let unreadable = b"not avro".to_vec();
        let now = Instant::now();
        for (offset, payload) in [(5, &first), (6, &other), (7, &first), (8, &unreadable)] {
            let record = Consumed {
                offset,
                key: None,
                payload,
            };
            admit(&mut batcher, &mut dedupe, &mut counts, 0, record, now);
        }
        let mut other_partition = Batcher::new(1, bounds, None);
        let copy_elsewhere = Consumed {
            offset: 0,
            key: None,
            payload: &first,
        };
        admit(
            &mut other_partition,
            &mut dedupe,
            &mut counts,
            1,
            copy_elsewhere,
            now,
        );
        assert_eq!(other_partition.held().records, 1, "partitions are separate");
        batcher.cut();
        let batch = batcher.take_sealed().expect("sealed");
        assert_eq!((batch.first_offset, batch.last_offset), (5, 8));
        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            [5, 6, 8],
            "the copy at 7 is passed over, the unreadable 8 goes on"
        );
        assert_eq!((counts.read, counts.duplicates), (5, 1));
        let bytes = first.len() + other.len() + unreadable.len();
        assert_eq!(batch.held().bytes, bytes, "the copy's bytes are not held");
    }

    #[test]
    fn a_rebalance_ends_the_assignment_its_commits_belong_to() {
        let context = context();
        assert_eq!(context.while_assigned(0, || "committed"), Some("committed"));
        assert!(context.close_assignment(Duration::ZERO));
        assert_eq!(context.assignment(), 1);
        assert_eq!(context.while_assigned(0, || "committed"), None);
        assert_eq!(context.while_assigned(1, || "committed"), Some("committed"));
        assert!(!context.is_stuck());
    }

    /// An intent commit on another thread: it waits for a rebalance to
    /// start closing the assignment, tries to start a second commit, then
    /// lasts `lasting` more. Returns once the first commit has started; the
    /// thread yields whether the second one started.
    fn commit_during_rebalance(
        context: &Arc<SinkContext>,
        lasting: Duration,
    ) -> std::thread::JoinHandle<Option<bool>> {
        let (started, commit_started) = std::sync::mpsc::channel();
        let context = context.clone();
        let commit = std::thread::spawn(move || {
            context.while_assigned(0, || {
                started.send(()).expect("test alive");
                let closing = || context.assignment.lock().map_or(true, |a| a.closing);
                while !closing() && !context.is_stuck() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let second = context.while_assigned(0, || ()).is_some();
                std::thread::sleep(lasting);
                second
            })
        });
        commit_started.recv().expect("commit started");
        commit
    }

    #[test]
    fn a_rebalance_waits_for_the_commit_in_flight_and_lets_no_new_one_start() {
        let context = context();
        let commit = commit_during_rebalance(&context, Duration::from_millis(100));
        assert!(context.close_assignment(Duration::from_secs(10)));
        assert_eq!(commit.join().expect("commit thread"), Some(false));
        assert_eq!(context.assignment(), 1);
        assert!(!context.is_stuck());
    }

    #[test]
    fn a_commit_that_outlasts_the_rebalance_wait_makes_the_consumer_stuck() {
        let context = context();
        let commit = commit_during_rebalance(&context, Duration::from_millis(500));
        assert!(!context.close_assignment(Duration::from_millis(50)));
        assert!(context.is_stuck());
        assert_eq!(commit.join().expect("commit thread"), Some(false));
        // Stuck for good: no later commit, no later rebalance.
        assert_eq!(context.while_assigned(0, || ()), None);
        assert!(!context.close_assignment(Duration::from_secs(1)));
        assert_eq!(context.assignment(), 0);
    }
}
