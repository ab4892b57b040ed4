//! The consume → enrich → produce loop, exactly once: records of
//! `lumen.raw` (consumer group, `read_committed`, no auto-commit) are
//! decoded, de-duplicated and enriched into a batch of outputs (enriched
//! events, share records, dead letters); a batch closes on count or time and
//! is written in one transaction together with the consumer's offsets.
//!
//! Rebalances (eager protocol: every assignment starts from the committed
//! offsets) are reported by the consumer context through a channel; the
//! loop drains it before processing a record and before committing: a
//! revocation discards the open batch (never committed, so re-read by the
//! next owner), an assignment restores the partitions' state before their
//! first record. An aborted transaction rewinds the batch's partitions to
//! its first offsets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use lumen_runtime::{Readiness, Shutdown};
use lumen_schemas::{Codec, RawEvent, ShareRecord};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::classify::Classifier;
use crate::config::Config;
use crate::enrich::{Enriched, Enricher, token_lookup};
use crate::error::{Error, Result};
use crate::metrics::{Counter, Metrics, Tally};
use crate::produce::{self, Encoders, KafkaTransport, Output, SourcePosition, Transport};
use crate::restore::Restorer;
use crate::tokens::TokenStore;
use crate::transaction::{self, TransactionalProducer};
use crate::user_agent::CacheOutcome;
use lumen_runtime::dedupe::{Dedupe, EventDigest};

/// How often rebalance events are looked at while no record arrives.
const REBALANCE_POLL: Duration = Duration::from_millis(100);

/// Restored records in flight from the restore reader to the loop.
const RESTORE_CHANNEL: usize = 1024;

/// What a restore reads back, sent to the loop as it is read.
enum Restored {
    /// A share record of a partition, for the token store.
    Share(i32, ShareRecord),
    /// A recent event of a partition, for the dedupe window.
    EventId(i32, EventDigest),
}
/// Pause after an aborted transaction before reprocessing, so a broker
/// outage does not turn into a busy loop.
const ABORT_BACKOFF: Duration = Duration::from_millis(500);
/// Attempts at restoring an assignment while Kafka is unreachable (a
/// broker restart makes the group rebalance while offsets and records
/// cannot be read), with delays from 250 ms doubling to 10 s, each plus up
/// to itself again of jitter: 26 to 52 s of waiting before the service
/// gives up.
const RESTORE_ATTEMPTS: usize = 8;
/// How often librdkafka reports statistics (consumer lag, group state).
const STATISTICS_INTERVAL_MS: &str = "5000";

/// A partition change reported by the consumer context.
#[derive(Debug)]
enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Forwards rebalances to the loop and consumer lag to the metrics.
struct LoopContext {
    events: UnboundedSender<RebalanceEvent>,
    raw_topic: String,
    group: lumen_runtime::kafka::GroupWatch,
    metrics: Metrics,
}

impl ClientContext for LoopContext {
    fn stats(&self, statistics: Statistics) {
        self.group.observe(&statistics);
        let Some(topic) = statistics.topics.get(&self.raw_topic) else {
            return;
        };
        for partition in topic.partitions.values() {
            if let Some(lag) = lag(partition) {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&partition.partition.to_string()])
                    .set(lag);
            }
        }
    }
}

/// A partition's lag: librdkafka's `consumer_lag` when it knows the
/// committed offset; otherwise (offsets committed through the producer's
/// transactions are not tracked by the consumer) the records not yet handed
/// to the loop, `ls_offset - app_offset`, which leaves out at most the open
/// batch. `None` for partitions this member does not own (and librdkafka's
/// internal partition -1).
fn lag(partition: &rdkafka::statistics::Partition) -> Option<i64> {
    if partition.partition < 0 {
        return None;
    }
    if partition.consumer_lag >= 0 {
        return Some(partition.consumer_lag);
    }
    (partition.ls_offset >= 0 && partition.app_offset >= 0)
        .then(|| (partition.ls_offset - partition.app_offset).max(0))
}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // The loop may be gone during shutdown: nothing left to discard.
            let _ = self
                .events
                .send(RebalanceEvent::Revoked(partition_ids(partitions)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let _ = self
                .events
                .send(RebalanceEvent::Assigned(partition_ids(partitions)));
        }
    }
}

fn partition_ids(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// The records of one transaction and what to do once it commits.
#[derive(Default)]
struct Batch {
    records: usize,
    /// Why sending into the transaction failed: the batch will be aborted.
    failed: Option<Error>,
    first_offsets: BTreeMap<i32, i64>,
    next_offsets: BTreeMap<i32, i64>,
    event_ids: foldhash::HashSet<(i32, EventDigest)>,
    tally: Tally,
    opened: Option<Instant>,
}

impl Batch {
    fn track(&mut self, partition: i32, offset: i64) {
        self.opened.get_or_insert_with(Instant::now);
        self.records += 1;
        self.first_offsets.entry(partition).or_insert(offset);
        self.next_offsets.insert(partition, offset + 1);
    }
}

/// One consumed record, as the loop processes it.
struct Record<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
}

impl<'a> From<&'a BorrowedMessage<'_>> for Record<'a> {
    fn from(message: &'a BorrowedMessage<'_>) -> Self {
        Self {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
        }
    }
}

/// Everything the loop mutates, apart from the consumer's record stream.
struct Pipeline<T> {
    config: Config,
    enricher: Enricher,
    dedupe: Dedupe,
    decoder: Codec<RawEvent>,
    encoders: Encoders,
    transport: T,
    restorer: Arc<Restorer>,
    metrics: Metrics,
    readiness: Readiness,
    events: UnboundedReceiver<RebalanceEvent>,
    batch: Batch,
}

/// Runs the loop until `shutdown` fires, then commits the open batch.
pub async fn run(
    config: Config,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: Shutdown,
) -> Result<()> {
    let pipeline_config = &config.pipeline;
    let restorer = Restorer::new(
        &config.kafka,
        Duration::from_millis(pipeline_config.restore_timeout_ms),
    )?;
    let restorer = Arc::new(restorer);
    let check = Arc::clone(&restorer);
    let topics = config.topics.clone();
    tokio::task::spawn_blocking(move || check.check_topics(&topics)).await??;

    let (sender, events) = tokio::sync::mpsc::unbounded_channel();
    let context = LoopContext {
        events: sender,
        raw_topic: config.topics.raw.clone(),
        group: lumen_runtime::kafka::GroupWatch::default(),
        metrics: metrics.clone(),
    };
    let consumer: StreamConsumer<LoopContext> = config
        .kafka
        .client_config(&[
            ("group.id", &pipeline_config.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            // Eager assignment: a rebalance revokes everything, and every
            // assignment restarts from the committed offsets.
            ("partition.assignment.strategy", "range,roundrobin"),
            ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
            // librdkafka prefetches up to 64 MiB by default; a transaction
            // reads 5 000 events (about 2 MiB), so 4 MiB keeps it fed, as
            // long as a full queue does not stop fetching for librdkafka's
            // default second (`make bench-enrich`: 16 MiB and 1 s, 36 100
            // events/s and 106 MiB besides the token store; 4 MiB and
            // 20 ms, 39 100 and 85 MiB).
            ("queued.max.messages.kbytes", "4096"),
            ("fetch.queue.backoff.ms", "20"),
        ])
        .create_with_context(context)
        .map_err(Error::kafka("create consumer"))?;
    let consumer = Arc::new(consumer);
    // The group join runs in librdkafka's threads while the producer
    // initialises its transactions; the assignment is acted on only once
    // the loop polls, after both are ready.
    consumer
        .subscribe(&[&config.topics.raw])
        .map_err(Error::kafka("subscribe"))?;
    let transaction_timeout = Duration::from_millis(pipeline_config.transaction_timeout_ms);
    let producer = TransactionalProducer::new(
        &config.kafka.client_config(&[
            ("transactional.id", &pipeline_config.transactional_id()),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", "60000"),
        ]),
        transaction_timeout,
    )
    .await?;

    let transport = KafkaTransport {
        consumer: Arc::clone(&consumer),
        producer,
        topics: config.topics.clone(),
        timeout: transaction_timeout,
        open: None,
    };
    let mut pipeline = Pipeline::new(config, transport, restorer, metrics, readiness, events)?;
    if let Err(error) = drive(&mut pipeline, &consumer, &shutdown).await {
        // Closing a consumer whose group or brokers are gone can block for
        // good (librdkafka #3740): the clients go on a blocking thread, not
        // awaited; the open transaction is aborted by the next producer's
        // `init_transactions`.
        tokio::task::spawn_blocking(move || drop((pipeline, consumer)));
        return Err(error);
    }
    pipeline.flush().await?;
    pipeline.readiness.set(false);
    tracing::info!("enrich stopped after committing its last batch");
    Ok(())
}

/// The loop itself: records in, batches committed, until `shutdown` fires
/// (the open batch is left to the caller) or an error stops it.
async fn drive(
    pipeline: &mut Pipeline<KafkaTransport<LoopContext>>,
    consumer: &StreamConsumer<LoopContext>,
    shutdown: &Shutdown,
) -> Result<()> {
    let max_wait = Duration::from_millis(pipeline.config.pipeline.batch_max_wait_ms);
    let mut rebalance_poll = tokio::time::interval(REBALANCE_POLL);
    let consumer_errors = lumen_runtime::kafka::ConsumerErrors::default();
    loop {
        let deadline = pipeline.batch.opened.map(|opened| opened + max_wait);
        tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            () = sleep_until(deadline), if deadline.is_some() => pipeline.flush().await?,
            _ = rebalance_poll.tick() => {
                if consumer.context().group.lost() {
                    return Err(Error::GroupLost {
                        after_ms: lumen_runtime::kafka::KAFKA_LOST_AFTER.as_millis(),
                    });
                }
                pipeline.handle_rebalances().await?;
            }
            message = consumer.recv() => {
                pipeline.handle_rebalances().await?;
                match message {
                    Ok(message) => {
                        pipeline.process(&Record::from(&message));
                        // The age is checked here too: while records keep
                        // arriving the loop never waits, and tokio's timer
                        // would not fire the deadline above.
                        let full = pipeline.batch.records >= pipeline.config.pipeline.batch_max_events;
                        if full || pipeline.batch.opened.is_some_and(|opened| opened.elapsed() >= max_wait) {
                            pipeline.flush().await?;
                        }
                    }
                    Err(error) => consumer_errors.log(&error),
                }
                // librdkafka's queue is not a tokio resource: without this
                // a busy loop would never yield, and the runtime would not
                // look at signals or timers until the queue ran dry.
                tokio::task::consume_budget().await;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl<T: Transport> Pipeline<T> {
    fn new(
        config: Config,
        transport: T,
        restorer: Arc<Restorer>,
        metrics: Metrics,
        readiness: Readiness,
        events: UnboundedReceiver<RebalanceEvent>,
    ) -> Result<Self> {
        let pipeline = &config.pipeline;
        Ok(Self {
            enricher: Enricher::new(
                Classifier::new(
                    &config.classify.article_path_regex,
                    &config.classify.site_article_path_regex,
                )?,
                pipeline.ua_cache_entries,
                TokenStore::new(pipeline.token_ttl_ms(), pipeline.token_store_max_bytes),
            ),
            dedupe: Dedupe::new(pipeline.dedupe_window_events),
            decoder: Codec::new().map_err(Error::Encode)?,
            encoders: Encoders::new()?,
            transport,
            restorer,
            metrics,
            readiness,
            events,
            batch: Batch::default(),
            config,
        })
    }

    /// Decodes, de-duplicates and enriches one record into the batch.
    fn process(&mut self, record: &Record<'_>) {
        let Record {
            topic,
            partition,
            offset,
            key,
            payload,
        } = *record;
        self.batch.track(partition, offset);
        let source = SourcePosition {
            topic,
            partition,
            offset,
        };
        let raw = match self.decoder.decode(payload) {
            Ok(raw) => raw,
            Err(error) => return self.dead_letter(key, payload, &Error::Decode(error), source),
        };
        let id = EventDigest::of(&raw.event_id);
        if self.dedupe.seen(partition, id) || self.batch.event_ids.contains(&(partition, id)) {
            self.batch.tally.add(Counter::EventsIn, "duplicate");
            return;
        }
        let enriched = match self.enricher.enrich(partition, raw, None) {
            Ok(enriched) => enriched,
            Err(error) => return self.dead_letter(key, payload, &error, source),
        };
        // Both encoded before either is sent: a record that cannot be
        // written whole goes to the dead letters alone.
        let event = self.encoders.enriched(key, &enriched.event);
        let share = enriched
            .share
            .as_ref()
            .map(|share| self.encoders.share(partition, share))
            .transpose();
        match (event, share) {
            (Ok(event), Ok(share)) => {
                self.count(&enriched);
                self.send(&event);
                if let Some(share) = &share {
                    self.send(share);
                }
                self.batch.event_ids.insert((partition, id));
            }
            (Err(error), _) | (_, Err(error)) => self.dead_letter(key, payload, &error, source),
        }
    }

    /// Counts an enriched event in the batch's tally (applied on commit).
    fn count(&mut self, enriched: &Enriched) {
        let tally = &mut self.batch.tally;
        tally.add(Counter::EventsIn, "enriched");
        if enriched.share.is_some() {
            tally.add(Counter::SharesRecorded, "");
        }
        tally.add(
            Counter::EventsOut,
            crate::metrics::channel_label(enriched.event.channel),
        );
        tally.add(Counter::RuleHits, enriched.rule);
        tally.add(
            Counter::UaCache,
            match enriched.ua_cache {
                CacheOutcome::Hit => "hit",
                CacheOutcome::Miss => "miss",
            },
        );
        if let Some(result) = token_lookup(&enriched.event) {
            tally.add(Counter::TokenLookups, result);
        }
        if let Some(app) = enriched.bot {
            tally.add(Counter::BotEvents, app);
        }
    }

    fn dead_letter(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        error: &Error,
        source: SourcePosition<'_>,
    ) {
        tracing::debug!(%error, partition = source.partition, offset = source.offset, "record to the dead-letter topic");
        self.batch.tally.add(Counter::EventsIn, "dlq");
        self.batch.tally.add(Counter::Dlq, error.reason());
        self.send(&produce::dead_letter(key, payload, error, source));
    }

    /// Sends into the batch's transaction; after a failure, nothing more
    /// (the batch will be aborted and read again).
    fn send(&mut self, output: &Output<'_>) {
        if self.batch.failed.is_none()
            && let Err(error) = self.transport.send(output)
        {
            self.batch.failed = Some(error);
        }
    }

    /// Commits the open batch in one transaction; on a non-fatal failure
    /// rewinds its partitions so the records are processed again.
    #[tracing::instrument(skip_all, fields(records = self.batch.records))]
    async fn flush(&mut self) -> Result<()> {
        self.handle_rebalances().await?;
        if self.batch.records == 0 {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.batch);
        let started = Instant::now();
        let written = match batch.failed.take() {
            None => self.transport.commit(&batch.next_offsets).await,
            Some(error) => {
                self.abort_open().await?;
                Err(error)
            }
        };
        match written {
            Ok(()) => {
                self.metrics
                    .transaction_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .transactions
                    .with_label_values(&["committed"])
                    .inc();
                self.metrics.apply(&batch.tally);
                // Only now: the events of an aborted batch are processed again.
                for (partition, id) in batch.event_ids {
                    self.dedupe.remember(partition, id);
                }
                self.update_store_gauge();
                Ok(())
            }
            Err(error) => {
                self.metrics
                    .transaction_errors
                    .with_label_values(&[error.operation(), error.reason()])
                    .inc();
                if transaction::is_fatal(&error) {
                    return Err(error);
                }
                tracing::warn!(%error, reason = error.reason(), "transaction aborted; reprocessing the batch");
                self.metrics
                    .transactions
                    .with_label_values(&["aborted"])
                    .inc();
                self.transport.rewind(&batch.first_offsets).await;
                tokio::time::sleep(ABORT_BACKOFF).await;
                Ok(())
            }
        }
    }

    /// Applies the rebalances reported since the last call.
    async fn handle_rebalances(&mut self) -> Result<()> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                RebalanceEvent::Revoked(partitions) => {
                    self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                    tracing::info!(
                        ?partitions,
                        discarded = self.batch.records,
                        "partitions revoked"
                    );
                    self.discard().await?;
                    self.readiness.set(false);
                    for partition in partitions {
                        self.enricher.tokens().drop_partition(partition);
                        self.dedupe.drop_partition(partition);
                    }
                }
                RebalanceEvent::Assigned(partitions) => {
                    self.metrics.rebalances.with_label_values(&["assign"]).inc();
                    self.restore_retrying(&partitions).await?;
                    self.readiness.set(!partitions.is_empty());
                }
            }
        }
        Ok(())
    }

    /// Drops the open batch and aborts what it sent: it was never
    /// committed, so the partitions' next owner reads it again.
    async fn discard(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        if batch.records == 0 {
            return Ok(());
        }
        self.abort_open().await
    }

    /// Aborts the open transaction. A failure stops the loop: librdkafka
    /// would refuse every later transaction while this one is open, and a
    /// restart's initialisation aborts it.
    async fn abort_open(&mut self) -> Result<()> {
        match self.transport.abort().await {
            // Replacing the producer aborted what the old one had open.
            Ok(()) | Err(Error::ProducerRenewed(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// [`Self::restore`], again after a pause while it fails with an error
    /// that waiting can cure. Each attempt starts from empty partitions.
    async fn restore_retrying(&mut self, partitions: &[i32]) -> Result<()> {
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .with_max_times(RESTORE_ATTEMPTS - 1)
            .build();
        loop {
            match self.restore(partitions).await {
                Err(error) if error.is_transient() => {
                    let Some(delay) = delays.next() else {
                        return Err(error);
                    };
                    tracing::warn!(%error, ?partitions, ?delay, "cannot restore partitions yet; retrying");
                    self.metrics.restore_retries.inc();
                    tokio::time::sleep(delay).await;
                }
                result => return result,
            }
        }
    }

    /// Restores the token store and recent ids of newly assigned
    /// partitions, all read in one pass and inserted as they arrive (never
    /// held twice).
    #[tracing::instrument(skip_all, fields(?partitions))]
    async fn restore(&mut self, partitions: &[i32]) -> Result<()> {
        let started = Instant::now();
        tracing::info!("restoring partition state");
        let committed = self.transport.committed(partitions).await?;
        for &partition in partitions {
            self.enricher.tokens().drop_partition(partition);
            self.dedupe.drop_partition(partition);
        }
        let (sender, mut restored) = tokio::sync::mpsc::channel(RESTORE_CHANNEL);
        let restorer = Arc::clone(&self.restorer);
        let topics = self.config.topics.clone();
        let window = self.dedupe.capacity();
        let assigned = partitions.to_vec();
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            // A send fails only once the loop stopped listening: nothing to do.
            restorer.shares(&topics.shares, &assigned, |partition, share| {
                let _ = sender.blocking_send(Restored::Share(partition, share));
            })?;
            restorer.recent_ids(&topics.raw, &committed, window, |partition, id| {
                let _ = sender.blocking_send(Restored::EventId(partition, EventDigest::of(&id)));
            })
        });
        let now = now_ms();
        let mut counts: BTreeMap<i32, (usize, usize)> =
            partitions.iter().map(|&p| (p, (0, 0))).collect();
        while let Some(item) = restored.recv().await {
            match item {
                Restored::Share(partition, share) => {
                    self.enricher.tokens().insert(partition, share, now);
                    counts.entry(partition).or_default().0 += 1;
                }
                Restored::EventId(partition, id) => {
                    self.dedupe.remember(partition, id);
                    counts.entry(partition).or_default().1 += 1;
                }
            }
        }
        reader.await??;
        for (partition, (restored_shares, restored_ids)) in counts {
            tracing::info!(
                partition,
                restored_shares,
                restored_ids,
                "partition state restored"
            );
        }
        self.metrics
            .restore_duration
            .observe(started.elapsed().as_secs_f64());
        self.update_store_gauge();
        Ok(())
    }

    fn update_store_gauge(&mut self) {
        let tokens = self.enricher.tokens();
        let entries = i64::try_from(tokens.len()).unwrap_or(i64::MAX);
        let bytes = i64::try_from(tokens.bytes()).unwrap_or(i64::MAX);
        self.metrics.token_store_entries.set(entries);
        self.metrics.token_store_bytes.set(bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use lumen_runtime::KafkaConfig;
    use lumen_schemas::{EventKind, ShareMethod, ShareToken};
    use prometheus::Registry;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;
    use crate::produce::Destination;

    /// Records what the loop commits; fails the next commit or send, or the
    /// next reads of committed offsets, when told to.
    #[derive(Default)]
    struct Recording {
        open: Vec<Destination>,
        written: Vec<(Vec<Destination>, BTreeMap<i32, i64>)>,
        aborted: Vec<Vec<Destination>>,
        rewinds: Mutex<Vec<BTreeMap<i32, i64>>>,
        fail_next: Option<RDKafkaErrorCode>,
        fail_send: Option<RDKafkaErrorCode>,
        fail_committed: Mutex<Vec<RDKafkaErrorCode>>,
    }

    impl Transport for Recording {
        fn send(&mut self, output: &Output<'_>) -> Result<()> {
            if let Some(code) = self.fail_send.take() {
                return Err(Error::kafka("enqueue")(KafkaError::MessageProduction(code)));
            }
            self.open.push(output.destination);
            Ok(())
        }

        async fn commit(&mut self, next: &BTreeMap<i32, i64>) -> Result<()> {
            if let Some(code) = self.fail_next.take() {
                self.aborted.push(std::mem::take(&mut self.open));
                return Err(Error::kafka("commit")(KafkaError::MessageProduction(code)));
            }
            self.written
                .push((std::mem::take(&mut self.open), next.clone()));
            Ok(())
        }

        async fn abort(&mut self) -> Result<()> {
            self.aborted.push(std::mem::take(&mut self.open));
            Ok(())
        }

        async fn rewind(&self, offsets: &BTreeMap<i32, i64>) {
            self.rewinds.lock().expect("lock").push(offsets.clone());
        }

        async fn committed(&self, _: &[i32]) -> Result<HashMap<i32, i64>> {
            match self.fail_committed.lock().expect("lock").pop() {
                Some(code) => Err(Error::kafka("committed offsets")(
                    KafkaError::MetadataFetch(code),
                )),
                None => Ok(HashMap::new()),
            }
        }
    }

    struct Harness {
        pipeline: Pipeline<Recording>,
        registry: Registry,
        rebalances: UnboundedSender<RebalanceEvent>,
        codec: Codec<RawEvent>,
    }

    fn harness() -> Harness {
        let (rebalances, events) = tokio::sync::mpsc::unbounded_channel();
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).expect("metrics");
        // Never used by these tests: no assignment is reported.
        let restorer =
            Restorer::new(&KafkaConfig::default(), Duration::from_secs(1)).expect("restorer");
        let pipeline = Pipeline::new(
            Config::with_defaults(),
            Recording::default(),
            Arc::new(restorer),
            metrics,
            Readiness::new(),
            events,
        )
        .expect("pipeline");
        Harness {
            pipeline,
            registry,
            rebalances,
            codec: Codec::new().expect("codec"),
        }
    }

    fn raw(id: &str, kind: EventKind, token: &str) -> RawEvent {
        RawEvent {
            event_id: id.into(),
            site_id: "daily-planet".into(),
            kind,
            received_at: now_ms(),
            sent_at: None,
            url: "https://dailyplanet.example/news/2026/eclipse".into(),
            referrer: None,
            user_agent: "Mozilla/5.0".into(),
            visitor_id: "v".into(),
            minted_token: None,
            landing_token: (kind == EventKind::Pageview).then(|| token.to_owned()),
            webview: None,
            share_token: (kind == EventKind::Share).then(|| token.to_owned()),
            share_method: (kind == EventKind::Share).then_some(ShareMethod::Copy),
            share_target: None,
            parent_token: None,
        }
    }

    impl Harness {
        /// Feeds payloads to partition 1 from `first_offset` on.
        fn feed(&mut self, first_offset: i64, payloads: &[Vec<u8>]) {
            for (offset, payload) in (first_offset..).zip(payloads) {
                self.pipeline.process(&Record {
                    topic: "lumen.raw",
                    partition: 1,
                    offset,
                    key: Some(b"key"),
                    payload,
                });
            }
        }

        fn payloads(&self) -> Vec<Vec<u8>> {
            let token = ShareToken::new(now_ms(), [9; 7]).encode();
            vec![
                self.codec
                    .encode(&raw("share", EventKind::Share, &token))
                    .expect("encode"),
                self.codec
                    .encode(&raw("visit", EventKind::Pageview, &token))
                    .expect("encode"),
                b"garbage".to_vec(),
            ]
        }

        fn count(&self, outcome: &str) -> u64 {
            self.pipeline
                .metrics
                .events_in
                .with_label_values(&[outcome])
                .get()
        }
    }

    #[tokio::test]
    async fn one_transaction_per_batch_with_next_offsets_and_retries_dropped() {
        let mut h = harness();
        let payloads = h.payloads();
        h.feed(10, &payloads);
        h.pipeline.flush().await.expect("flush");
        use Destination::{DeadLetter, Enriched, Shares};
        let written = &h.pipeline.transport.written;
        assert_eq!(written[0].0, [Enriched, Shares, Enriched, DeadLetter]);
        assert_eq!(
            written[0].1,
            BTreeMap::from([(1, 13)]),
            "offsets are last + 1"
        );
        assert_eq!((h.count("enriched"), h.count("dlq")), (2, 1));

        h.feed(13, &payloads[1..2]);
        h.pipeline.flush().await.expect("flush");
        let written = &h.pipeline.transport.written;
        assert!(written[1].0.is_empty(), "the retry is dropped");
        assert_eq!(
            written[1].1,
            BTreeMap::from([(1, 14)]),
            "but its offset commits"
        );
        assert_eq!(h.count("duplicate"), 1);
    }

    #[tokio::test]
    async fn committed_events_count_under_the_rule_that_decided() {
        let mut h = harness();
        let payloads = h.payloads();
        let exposition = |h: &Harness| {
            prometheus::TextEncoder::new()
                .encode_to_string(&h.registry.gather())
                .expect("encode")
        };
        h.feed(10, &payloads);
        assert!(
            !exposition(&h).contains("lumen_enrich_rule_hits_total{"),
            "nothing counted before the commit"
        );
        h.pipeline.flush().await.expect("flush");
        let text = exposition(&h);
        // The share carries no landing token: its article path decides.
        assert!(
            text.contains("lumen_enrich_rule_hits_total{rule=\"heuristic.deep_link\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lumen_enrich_rule_hits_total{rule=\"token.private\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("lumen_enrich_rule_hits_total{").count(),
            2,
            "the dead letter has no rule: {text}"
        );
    }

    #[tokio::test]
    async fn aborted_batch_is_rewound_uncounted_and_processed_again() {
        let mut h = harness();
        let payloads = h.payloads();
        h.pipeline.transport.fail_next = Some(RDKafkaErrorCode::MessageTimedOut);
        h.feed(10, &payloads);
        h.pipeline.flush().await.expect("an abort is not fatal");
        assert_eq!(
            *h.pipeline.transport.rewinds.lock().expect("lock"),
            [BTreeMap::from([(1, 10)])]
        );
        assert!(h.pipeline.transport.written.is_empty());
        assert_eq!(h.count("enriched"), 0, "nothing counted before a commit");
        let errors = &h.pipeline.metrics.transaction_errors;
        assert_eq!(errors.with_label_values(&["commit", "timed_out"]).get(), 1);
        assert_eq!(
            h.pipeline
                .metrics
                .transactions
                .with_label_values(&["aborted"])
                .get(),
            1
        );

        // The rewound records come again and are not taken for retries.
        h.feed(10, &payloads);
        h.pipeline.flush().await.expect("flush");
        assert_eq!(h.pipeline.transport.written[0].0.len(), 4);
        assert_eq!((h.count("enriched"), h.count("duplicate")), (2, 0));
    }

    #[tokio::test]
    async fn a_failed_send_aborts_the_batch_and_rewinds_it() {
        let mut h = harness();
        let payloads = h.payloads();
        h.pipeline.transport.fail_send = Some(RDKafkaErrorCode::QueueFull);
        h.feed(10, &payloads);
        h.pipeline.flush().await.expect("not fatal");
        let transport = &h.pipeline.transport;
        assert!(transport.written.is_empty());
        assert_eq!(
            transport.aborted,
            [Vec::<Destination>::new()],
            "nothing is sent after the failure, and the transaction is aborted"
        );
        assert_eq!(
            *transport.rewinds.lock().expect("lock"),
            [BTreeMap::from([(1, 10)])]
        );
        assert_eq!(h.count("enriched"), 0);
    }

    #[tokio::test]
    async fn fenced_producer_stops_the_loop() {
        let mut h = harness();
        let payloads = h.payloads();
        h.pipeline.transport.fail_next = Some(RDKafkaErrorCode::ProducerFenced);
        h.feed(10, &payloads);
        let error = h.pipeline.flush().await.expect_err("fatal");
        assert_eq!(error.reason(), "fenced");
    }

    #[tokio::test]
    async fn revocation_discards_the_open_batch() {
        let mut h = harness();
        let payloads = h.payloads();
        h.feed(10, &payloads);
        h.rebalances
            .send(RebalanceEvent::Revoked(vec![1]))
            .expect("send");
        h.pipeline.flush().await.expect("flush");
        assert!(h.pipeline.transport.written.is_empty(), "never committed");
        assert_eq!(
            h.pipeline.transport.aborted,
            [vec![
                Destination::Enriched,
                Destination::Shares,
                Destination::Enriched,
                Destination::DeadLetter
            ]],
            "what it sent is aborted"
        );
        assert!(
            h.pipeline
                .transport
                .rewinds
                .lock()
                .expect("lock")
                .is_empty()
        );
        assert_eq!(h.pipeline.batch.records, 0);
        assert!(!h.pipeline.readiness.is_ready());
    }

    /// An empty assignment: its restore touches the transport only, never
    /// the restore consumer's Kafka.
    fn assign_nothing(h: &Harness, failures: &[RDKafkaErrorCode]) {
        *h.pipeline.transport.fail_committed.lock().expect("lock") = failures.to_vec();
        h.rebalances
            .send(RebalanceEvent::Assigned(Vec::new()))
            .expect("send");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_waits_out_an_unreachable_kafka() {
        let mut h = harness();
        assign_nothing(
            &h,
            &[
                RDKafkaErrorCode::AllBrokersDown,
                RDKafkaErrorCode::OperationTimedOut,
            ],
        );
        h.pipeline.handle_rebalances().await.expect("restored");
        assert_eq!(h.pipeline.metrics.restore_retries.get(), 2);
        assert_eq!(h.pipeline.metrics.restore_duration.get_sample_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_gives_up_on_a_lasting_outage_and_at_once_on_a_refusal() {
        let mut h = harness();
        assign_nothing(&h, &[RDKafkaErrorCode::AllBrokersDown; RESTORE_ATTEMPTS]);
        let error = h.pipeline.handle_rebalances().await.expect_err("gave up");
        assert_eq!(error.reason(), "all_brokers_down");
        let retries = u64::try_from(RESTORE_ATTEMPTS - 1).expect("small");
        assert_eq!(h.pipeline.metrics.restore_retries.get(), retries);

        assign_nothing(&h, &[RDKafkaErrorCode::GroupAuthorizationFailed]);
        h.pipeline.handle_rebalances().await.expect_err("refused");
        assert_eq!(h.pipeline.metrics.restore_retries.get(), retries);
    }
}
