//! Every metric of lumen-enrich, registered once on the admin registry.
//! Names follow `lumen_enrich_<what>_<unit>`; labels come from bounded sets
//! (channels, rule tables, error reasons, partitions). The consume loop
//! updates them once per batch or per event, never per byte.

use lumen_schemas::Channel;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Transaction commit latency buckets, seconds: a healthy local commit takes
/// a few milliseconds, a slow broker hundreds; past 10 s the batch is close
/// to `transaction.timeout.ms` anyway.
const TRANSACTION_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Restore latency buckets, seconds: from an empty topic to minutes of
/// replay.
const RESTORE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 180.0];

/// The metrics of lumen-enrich.
#[derive(Clone)]
pub struct Metrics {
    /// Raw records read, by outcome (`enriched`, `duplicate`, `dlq`).
    pub events_in: IntCounterVec,
    /// Enriched events written, by channel.
    pub events_out: IntCounterVec,
    /// Enriched events written, by the id of the rule that decided their
    /// channel: which rules carry the traffic, and which never fire.
    pub rule_hits: IntCounterVec,
    /// Records sent to the dead-letter topic, by reason.
    pub dlq: IntCounterVec,
    /// Landing token lookups, by result (`hit`, `address_bar`, `invalid`).
    pub token_lookups: IntCounterVec,
    /// User-agent cache lookups, by result (`hit`, `miss`).
    pub ua_cache: IntCounterVec,
    /// Explicit shares written to `lumen.shares`.
    pub shares_recorded: IntCounter,
    /// Transactions, by outcome (`committed`, `aborted`).
    pub transactions: IntCounterVec,
    /// Failed transactions, by the step that failed (`enqueue`, `deliver`,
    /// `send offsets`, `commit transaction`...) and the error tag: enqueue
    /// errors and delivery failures are told apart.
    pub transaction_errors: IntCounterVec,
    /// Time from beginning to committing a transaction.
    pub transaction_duration: Histogram,
    /// Time to restore the newly assigned partitions' state.
    pub restore_duration: Histogram,
    /// Restores attempted again after a transient Kafka error.
    pub restore_retries: IntCounter,
    /// Pipelines started again with new Kafka clients: the consumer's group
    /// had no coordinator for too long, or Kafka could not be reached.
    pub consumer_replacements: IntCounter,
    /// Consumer lag per partition of `lumen.raw`, from librdkafka statistics.
    pub consumer_lag: IntGaugeVec,
    /// Shares held in the token store.
    pub token_store_entries: IntGauge,
    /// Estimated memory of the token store.
    pub token_store_bytes: IntGauge,
    /// Partition assignments and revocations.
    pub rebalances: IntCounterVec,
    /// Bot events (never visits), by the app a preview fetch reveals
    /// (`none` for crawlers): counted apart from visits.
    pub bot_events: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let metrics = Self {
            events_in: counter_vec(
                "lumen_enrich_events_in_total",
                "Raw records read, by outcome.",
                "outcome",
            )?,
            events_out: counter_vec(
                "lumen_enrich_events_out_total",
                "Enriched events written, by channel.",
                "channel",
            )?,
            rule_hits: counter_vec(
                "lumen_enrich_rule_hits_total",
                "Enriched events written, by the channel rule that decided.",
                "rule",
            )?,
            dlq: counter_vec(
                "lumen_enrich_dlq_total",
                "Records sent to the dead-letter topic, by reason.",
                "reason",
            )?,
            token_lookups: counter_vec(
                "lumen_enrich_token_lookups_total",
                "Landing token lookups, by result.",
                "result",
            )?,
            ua_cache: counter_vec(
                "lumen_enrich_ua_cache_total",
                "User-agent cache lookups, by result.",
                "result",
            )?,
            shares_recorded: IntCounter::new(
                "lumen_enrich_shares_recorded_total",
                "Explicit shares written to the shares topic.",
            )?,
            transactions: counter_vec(
                "lumen_enrich_transactions_total",
                "Kafka transactions, by outcome.",
                "outcome",
            )?,
            transaction_errors: IntCounterVec::new(
                Opts::new(
                    "lumen_enrich_transaction_errors_total",
                    "Failed transactions, by failing step and error tag.",
                ),
                &["operation", "reason"],
            )?,
            transaction_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "lumen_enrich_transaction_duration_seconds",
                    "Time from beginning to committing a transaction.",
                )
                .buckets(TRANSACTION_BUCKETS.to_vec()),
            )?,
            restore_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "lumen_enrich_restore_duration_seconds",
                    "Time to restore the state of an assignment's partitions (all read at once).",
                )
                .buckets(RESTORE_BUCKETS.to_vec()),
            )?,
            restore_retries: IntCounter::new(
                "lumen_enrich_restore_retries_total",
                "Restores attempted again after a transient Kafka error.",
            )?,
            consumer_replacements: IntCounter::new(
                "lumen_enrich_consumer_replacements_total",
                "Pipelines started again with new Kafka clients (group without coordinator for too long, or Kafka unreachable).",
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "lumen_enrich_consumer_lag_messages",
                    "Consumer lag per partition of the raw topic.",
                ),
                &["partition"],
            )?,
            token_store_entries: IntGauge::new(
                "lumen_enrich_token_store_entries",
                "Shares held in the token store.",
            )?,
            token_store_bytes: IntGauge::new(
                "lumen_enrich_token_store_bytes",
                "Estimated memory of the token store.",
            )?,
            rebalances: counter_vec(
                "lumen_enrich_rebalances_total",
                "Partition assignments and revocations.",
                "kind",
            )?,
            bot_events: counter_vec(
                "lumen_enrich_bot_events_total",
                "Bot and link-preview events, by the app a preview reveals.",
                "preview_app",
            )?,
        };
        registry.register(Box::new(metrics.events_in.clone()))?;
        registry.register(Box::new(metrics.events_out.clone()))?;
        registry.register(Box::new(metrics.rule_hits.clone()))?;
        registry.register(Box::new(metrics.dlq.clone()))?;
        registry.register(Box::new(metrics.token_lookups.clone()))?;
        registry.register(Box::new(metrics.ua_cache.clone()))?;
        registry.register(Box::new(metrics.shares_recorded.clone()))?;
        registry.register(Box::new(metrics.transactions.clone()))?;
        registry.register(Box::new(metrics.transaction_errors.clone()))?;
        registry.register(Box::new(metrics.transaction_duration.clone()))?;
        registry.register(Box::new(metrics.restore_duration.clone()))?;
        registry.register(Box::new(metrics.restore_retries.clone()))?;
        registry.register(Box::new(metrics.consumer_replacements.clone()))?;
        registry.register(Box::new(metrics.consumer_lag.clone()))?;
        registry.register(Box::new(metrics.token_store_entries.clone()))?;
        registry.register(Box::new(metrics.token_store_bytes.clone()))?;
        registry.register(Box::new(metrics.rebalances.clone()))?;
        registry.register(Box::new(metrics.bot_events.clone()))?;
        Ok(metrics)
    }
}

/// The labelled counters a batch tallies before its transaction commits
/// (an aborted batch is processed again and must not count twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// [`Metrics::events_in`].
    EventsIn,
    /// [`Metrics::events_out`].
    EventsOut,
    /// [`Metrics::rule_hits`].
    RuleHits,
    /// [`Metrics::dlq`].
    Dlq,
    /// [`Metrics::token_lookups`].
    TokenLookups,
    /// [`Metrics::ua_cache`].
    UaCache,
    /// [`Metrics::shares_recorded`] (no label).
    SharesRecorded,
    /// [`Metrics::bot_events`].
    BotEvents,
}

/// Counts of one batch, applied on commit.
#[derive(Debug, Default)]
pub struct Tally {
    counts: foldhash::HashMap<(Counter, Label), u64>,
}

impl Tally {
    /// Adds one to `counter{label}`.
    pub fn add(&mut self, counter: Counter, label: &'static str) {
        *self.counts.entry((counter, Label(label))).or_default() += 1;
    }
}

/// A label told apart by its address, not its text: the tally takes
/// several per event, and hashing and comparing the text was ~2% of
/// enrich's CPU. Two copies of the same text are two entries, which
/// [`Metrics::apply`] adds to the same series.
#[derive(Debug, Clone, Copy)]
struct Label(&'static str);

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Label {}

impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}

impl Metrics {
    /// Adds a committed batch's tally.
    pub fn apply(&self, tally: &Tally) {
        for (&(counter, Label(label)), &count) in &tally.counts {
            let vec = match counter {
                Counter::EventsIn => &self.events_in,
                Counter::EventsOut => &self.events_out,
                Counter::RuleHits => &self.rule_hits,
                Counter::Dlq => &self.dlq,
                Counter::TokenLookups => &self.token_lookups,
                Counter::UaCache => &self.ua_cache,
                Counter::BotEvents => &self.bot_events,
                Counter::SharesRecorded => {
                    self.shares_recorded.inc_by(count);
                    continue;
                }
            };
            vec.with_label_values(&[label]).inc_by(count);
        }
    }
}

/// The metric label of a channel (its Avro symbol).
pub fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::DarkSocial => "dark_social",
        Channel::Social => "social",
        Channel::Search => "search",
        Channel::Ai => "ai",
        Channel::Email => "email",
        Channel::Paid => "paid",
        Channel::Referral => "referral",
        Channel::Internal => "internal",
        Channel::Direct => "direct",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_metric_with_its_prefix() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).expect("register");
        metrics.events_in.with_label_values(&["enriched"]).inc();
        metrics.consumer_lag.with_label_values(&["0"]).set(3);
        metrics.transaction_duration.observe(0.01);
        metrics
            .transaction_errors
            .with_label_values(&["enqueue", "queue_full"])
            .inc();
        metrics.restore_duration.observe(0.01);
        metrics.restore_retries.inc();
        metrics.shares_recorded.inc();
        metrics.token_store_entries.set(1);
        metrics.token_store_bytes.set(1);
        for label in [
            &metrics.events_out,
            &metrics.rule_hits,
            &metrics.dlq,
            &metrics.token_lookups,
            &metrics.ua_cache,
            &metrics.transactions,
            &metrics.rebalances,
            &metrics.bot_events,
        ] {
            label.with_label_values(&["x"]).inc();
        }
        let families = registry.gather();
        assert_eq!(families.len(), 18);
        assert!(
            families
                .iter()
                .all(|f| f.name().starts_with("lumen_enrich_"))
        );
    }

    #[test]
    fn tally_applies_on_commit_only() {
        let metrics = Metrics::register(&Registry::new()).expect("register");
        let mut tally = Tally::default();
        tally.add(Counter::EventsOut, channel_label(Channel::DarkSocial));
        tally.add(Counter::EventsOut, channel_label(Channel::DarkSocial));
        // The same text elsewhere in memory: its own entry, the same series.
        let copy: &'static str = String::from("dark_social").leak();
        tally.add(Counter::EventsOut, copy);
        tally.add(Counter::SharesRecorded, "");
        assert_eq!(
            metrics.events_out.with_label_values(&["dark_social"]).get(),
            0
        );
        metrics.apply(&tally);
        assert_eq!(
            metrics.events_out.with_label_values(&["dark_social"]).get(),
            3
        );
        assert_eq!(metrics.shares_recorded.get(), 1);
    }

    #[test]
    fn channel_labels_match_the_avro_symbols() {
        for channel in [
            Channel::DarkSocial,
            Channel::Social,
            Channel::Search,
            Channel::Ai,
            Channel::Email,
            Channel::Paid,
            Channel::Referral,
            Channel::Internal,
            Channel::Direct,
        ] {
            let json = serde_json::to_string(&channel).expect("json");
            assert_eq!(json.trim_matches('"'), channel_label(channel));
        }
    }
}
