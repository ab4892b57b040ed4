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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumen_runtime::{Readiness, Shutdown};
use lumen_schemas::{Codec, RawEvent};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::classify::Classifier;
use crate::config::Config;
use crate::dedupe::Dedupe;
use crate::enrich::{Enriched, Enricher, token_lookup};
use crate::error::{Error, Result};
use crate::metrics::{Counter, Metrics, Tally};
use crate::produce::{self, Encoders, Output, SourcePosition};
use crate::restore::Restorer;
use crate::tokens::TokenStore;
use crate::transaction::{self, TransactionalProducer};
use crate::user_agent::CacheOutcome;

/// How often rebalance events are looked at while no record arrives.
const REBALANCE_POLL: Duration = Duration::from_millis(100);
/// Pause after an aborted transaction before reprocessing, so a broker
/// outage does not turn into a busy loop.
const ABORT_BACKOFF: Duration = Duration::from_millis(500);
/// How often librdkafka reports statistics (consumer lag).
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
    metrics: Metrics,
}

impl ClientContext for LoopContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.raw_topic) else {
            return;
        };
        for partition in topic.partitions.values() {
            // librdkafka reports -1 for partitions this member does not own,
            // and an internal partition -1.
            if partition.partition >= 0 && partition.consumer_lag >= 0 {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&partition.partition.to_string()])
                    .set(partition.consumer_lag);
            }
        }
    }
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
    outputs: Vec<Output>,
    records: usize,
    first_offsets: BTreeMap<i32, i64>,
    next_offsets: BTreeMap<i32, i64>,
    event_ids: HashSet<(i32, String)>,
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

    fn offsets(&self, topic: &str) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (partition, next) in &self.next_offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(Error::kafka("offsets"))?;
        }
        Ok(list)
    }
}

/// Everything the loop mutates, apart from the consumer.
struct Pipeline {
    config: Config,
    enricher: Enricher,
    dedupe: Dedupe,
    decoder: Codec<RawEvent>,
    encoders: Encoders,
    producer: TransactionalProducer,
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
        ])
        .create_with_context(context)
        .map_err(Error::kafka("create consumer"))?;
    let consumer = Arc::new(consumer);
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
    consumer
        .subscribe(&[&config.topics.raw])
        .map_err(Error::kafka("subscribe"))?;

    let mut pipeline = Pipeline {
        enricher: Enricher::new(
            Classifier::new(
                &config.classify.article_path_regex,
                &config.classify.site_article_path_regex,
            )?,
            pipeline_config.ua_cache_entries,
            TokenStore::new(
                pipeline_config.token_ttl_ms(),
                pipeline_config.token_store_max_entries,
            ),
        ),
        dedupe: Dedupe::new(pipeline_config.dedupe_window_events),
        decoder: Codec::new().map_err(Error::Encode)?,
        encoders: Encoders::new()?,
        producer,
        restorer,
        metrics,
        readiness,
        events,
        batch: Batch::default(),
        config,
    };
    let max_wait = Duration::from_millis(pipeline.config.pipeline.batch_max_wait_ms);
    let mut rebalance_poll = tokio::time::interval(REBALANCE_POLL);
    loop {
        let deadline = pipeline.batch.opened.map(|opened| opened + max_wait);
        tokio::select! {
            biased;
            () = shutdown.wait() => break,
            () = sleep_until(deadline), if deadline.is_some() => {
                pipeline.flush(&consumer).await?;
            }
            _ = rebalance_poll.tick() => pipeline.handle_rebalances(&consumer).await?,
            message = consumer.recv() => {
                pipeline.handle_rebalances(&consumer).await?;
                match message {
                    Ok(message) => {
                        pipeline.process(&message);
                        if pipeline.batch.records >= pipeline.config.pipeline.batch_max_events {
                            pipeline.flush(&consumer).await?;
                        }
                    }
                    Err(error) => tracing::warn!(%error, tag = lumen_runtime::kafka::error_tag(&error), "consumer error"),
                }
            }
        }
    }
    pipeline.flush(&consumer).await?;
    pipeline.readiness.set(false);
    tracing::info!("enrich stopped after committing its last batch");
    Ok(())
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

impl Pipeline {
    /// Decodes, de-duplicates and enriches one record into the batch.
    fn process(&mut self, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
        self.batch.track(partition, message.offset());
        let payload = message.payload().unwrap_or_default();
        let source = SourcePosition {
            topic: message.topic(),
            partition,
            offset: message.offset(),
        };
        let raw = match self.decoder.decode(payload) {
            Ok(raw) => raw,
            Err(error) => {
                return self.dead_letter(message.key(), payload, &Error::Decode(error), source);
            }
        };
        let id = (partition, raw.event_id.clone());
        if self.dedupe.seen(partition, &id.1) || self.batch.event_ids.contains(&id) {
            self.batch.tally.add(Counter::EventsIn, "duplicate");
            return;
        }
        let outputs = self
            .enricher
            .enrich(partition, raw, None)
            .and_then(|enriched| self.outputs(partition, message.key(), enriched));
        match outputs {
            Ok(outputs) => {
                self.batch.tally.add(Counter::EventsIn, "enriched");
                self.batch.outputs.extend(outputs);
                self.batch.event_ids.insert(id);
            }
            Err(error) => self.dead_letter(message.key(), payload, &error, source),
        }
    }

    fn outputs(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        enriched: Enriched,
    ) -> Result<Vec<Output>> {
        let Enriched {
            event,
            share,
            ua_cache,
            bot,
        } = enriched;
        let mut outputs = vec![self.encoders.enriched(key, &event)?];
        if let Some(share) = &share {
            outputs.push(self.encoders.share(partition, share)?);
            self.batch.tally.add(Counter::SharesRecorded, "");
        }
        let tally = &mut self.batch.tally;
        tally.add(
            Counter::EventsOut,
            crate::metrics::channel_label(event.channel),
        );
        tally.add(
            Counter::UaCache,
            match ua_cache {
                CacheOutcome::Hit => "hit",
                CacheOutcome::Miss => "miss",
            },
        );
        if let Some(result) = token_lookup(&event) {
            tally.add(Counter::TokenLookups, result);
        }
        if let Some(app) = bot {
            tally.add(Counter::BotEvents, app);
        }
        Ok(outputs)
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
        self.batch
            .outputs
            .push(produce::dead_letter(key, payload, error, source));
    }

    /// Commits the open batch in one transaction; on a non-fatal failure
    /// rewinds its partitions so the records are processed again.
    #[tracing::instrument(skip_all, fields(records = self.batch.records))]
    async fn flush(&mut self, consumer: &Arc<StreamConsumer<LoopContext>>) -> Result<()> {
        self.handle_rebalances(consumer).await?;
        if self.batch.records == 0 {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let group = consumer
            .group_metadata()
            .ok_or_else(|| Error::Config("the consumer has no group metadata".to_owned()))?;
        let started = Instant::now();
        let written = produce::write_batch(
            &mut self.producer,
            &self.config.topics,
            &batch.outputs,
            batch.offsets(&self.config.topics.raw)?,
            group,
        )
        .await;
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
                for (partition, event_id) in batch.event_ids {
                    self.dedupe.remember(partition, event_id);
                }
                self.update_store_gauge();
                Ok(())
            }
            Err(error) if transaction::is_fatal(&error) => Err(error),
            Err(error) => {
                tracing::warn!(%error, reason = error.reason(), "transaction aborted; reprocessing the batch");
                self.metrics
                    .transactions
                    .with_label_values(&["aborted"])
                    .inc();
                self.rewind(consumer, &batch.first_offsets).await;
                tokio::time::sleep(ABORT_BACKOFF).await;
                Ok(())
            }
        }
    }

    /// Seeks each partition of an aborted batch back to its first offset.
    async fn rewind(
        &self,
        consumer: &Arc<StreamConsumer<LoopContext>>,
        first_offsets: &BTreeMap<i32, i64>,
    ) {
        let consumer = Arc::clone(consumer);
        let topic = self.config.topics.raw.clone();
        let offsets = first_offsets.clone();
        let timeout = Duration::from_millis(self.config.pipeline.transaction_timeout_ms);
        let sought = tokio::task::spawn_blocking(move || {
            for (partition, offset) in offsets {
                // A partition revoked meanwhile restarts from its committed
                // offset at its next owner anyway.
                if let Err(error) =
                    consumer.seek(&topic, partition, Offset::Offset(offset), timeout)
                {
                    tracing::warn!(%error, partition, "cannot rewind partition");
                }
            }
        })
        .await;
        if let Err(error) = sought {
            tracing::warn!(%error, "rewind task failed");
        }
    }

    /// Applies the rebalances reported since the last call.
    async fn handle_rebalances(
        &mut self,
        consumer: &Arc<StreamConsumer<LoopContext>>,
    ) -> Result<()> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                RebalanceEvent::Revoked(partitions) => {
                    self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                    tracing::info!(
                        ?partitions,
                        discarded = self.batch.records,
                        "partitions revoked"
                    );
                    self.batch = Batch::default();
                    self.readiness.set(false);
                    for partition in partitions {
                        self.enricher.tokens().drop_partition(partition);
                        self.dedupe.drop_partition(partition);
                    }
                }
                RebalanceEvent::Assigned(partitions) => {
                    self.metrics.rebalances.with_label_values(&["assign"]).inc();
                    self.restore(consumer, &partitions).await?;
                    self.readiness.set(!partitions.is_empty());
                }
            }
        }
        Ok(())
    }

    /// Restores the token store and recent ids of newly assigned partitions.
    #[tracing::instrument(skip_all, fields(?partitions))]
    async fn restore(
        &mut self,
        consumer: &Arc<StreamConsumer<LoopContext>>,
        partitions: &[i32],
    ) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&self.config.topics.raw, *partition);
        }
        let committed_consumer = Arc::clone(consumer);
        let timeout = Duration::from_millis(self.config.pipeline.restore_timeout_ms);
        let committed = tokio::task::spawn_blocking(move || {
            committed_consumer.committed_offsets(list, timeout)
        })
        .await?
        .map_err(Error::kafka("committed offsets"))?;
        let committed: HashMap<i32, i64> = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.partition(), offset)),
                _ => None,
            })
            .collect();
        for &partition in partitions {
            let started = Instant::now();
            let restorer = Arc::clone(&self.restorer);
            let topics = self.config.topics.clone();
            let window = self.dedupe.capacity();
            let committed = committed.get(&partition).copied();
            let (shares, ids) = tokio::task::spawn_blocking(move || -> Result<_> {
                let shares = restorer.shares(&topics.shares, partition)?;
                let ids = match committed {
                    Some(offset) => restorer.recent_ids(&topics.raw, partition, offset, window)?,
                    None => Vec::new(),
                };
                Ok((shares, ids))
            })
            .await??;
            let now = now_ms();
            let tokens = self.enricher.tokens();
            tokens.drop_partition(partition);
            let restored_shares = shares.len();
            for share in shares {
                tokens.insert(partition, share, now);
            }
            self.dedupe.drop_partition(partition);
            let restored_ids = ids.len();
            for id in ids {
                self.dedupe.remember(partition, id);
            }
            self.metrics
                .restore_duration
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                partition,
                restored_shares,
                restored_ids,
                "partition state restored"
            );
        }
        self.update_store_gauge();
        Ok(())
    }

    fn update_store_gauge(&mut self) {
        let entries = i64::try_from(self.enricher.tokens().len()).unwrap_or(i64::MAX);
        self.metrics.token_store_entries.set(entries);
    }
}
