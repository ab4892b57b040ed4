//! Every metric of `lumen-sink`, registered once in its own registry (the one
//! `/metrics` serves). Names follow `lumen_sink_<what>_<unit>`; labels take
//! values from bounded sets (error reasons, partition numbers).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::batch::Held;

/// Batch sizes in rows: from a trickle (time-bound batches of a few rows) to
/// the default size bound (25 000) and above.
const BATCH_ROWS_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0,
];

/// Insert latencies: a small local insert takes milliseconds, a 25 000-row
/// one a few hundred; the top buckets catch a struggling server before the
/// insert timeout (30 s by default).
const INSERT_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The sink's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// Kafka records read.
    pub records_consumed: IntCounter,
    /// Rows ClickHouse acknowledged.
    pub rows_written: IntCounter,
    /// Records not written because their event id was just written.
    pub duplicates: IntCounter,
    /// Rows per acknowledged insert.
    pub batch_rows: Histogram,
    /// Duration of acknowledged inserts.
    pub insert_duration: Histogram,
    /// Failed inserts and intent commits that will be retried, by reason.
    pub retries: IntCounterVec,
    /// Records sent to the dead-letter topic, by reason.
    pub dlq_rows: IntCounterVec,
    /// Offset commits that failed (the next commit or a replay covers them).
    pub commit_failures: IntCounter,
    /// Consumers given up on because a group call never returned or the
    /// group had no coordinator for too long.
    pub consumer_replacements: IntCounter,
    /// Consumer lag per partition, from librdkafka statistics.
    pub consumer_lag: IntGaugeVec,
    /// Partitions paused because ClickHouse is behind.
    pub paused_partitions: IntGauge,
    /// Rows buffered in memory, not yet acknowledged.
    pub buffered_rows: IntGauge,
    /// Their payload bytes.
    pub buffered_bytes: IntGauge,
    last_insert: LastInsert,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let records_consumed = IntCounter::new(
            "lumen_sink_records_consumed_total",
            "Kafka records read from the enriched topic.",
        )?;
        let rows_written = IntCounter::new(
            "lumen_sink_rows_written_total",
            "Rows ClickHouse acknowledged (deduplicated replays included).",
        )?;
        let duplicates = IntCounter::new(
            "lumen_sink_duplicates_dropped_total",
            "Records not written because a record with the same event id was among the partition's recent ones (--dedupe-window-events).",
        )?;
        let batch_rows = Histogram::with_opts(
            HistogramOpts::new("lumen_sink_batch_rows", "Rows per acknowledged insert.")
                .buckets(BATCH_ROWS_BUCKETS.to_vec()),
        )?;
        let insert_duration = Histogram::with_opts(
            HistogramOpts::new(
                "lumen_sink_insert_duration_seconds",
                "Duration of acknowledged ClickHouse inserts.",
            )
            .buckets(INSERT_SECONDS_BUCKETS.to_vec()),
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "lumen_sink_retries_total",
                "Failed inserts, dead-letter sends and intent commits, retried after a backoff.",
            ),
            &["reason"],
        )?;
        let dlq_rows = IntCounterVec::new(
            Opts::new(
                "lumen_sink_dlq_rows_total",
                "Records sent to the dead-letter topic.",
            ),
            &["reason"],
        )?;
        let commit_failures = IntCounter::new(
            "lumen_sink_commit_failures_total",
            "Offset commits that failed; the next commit or a replay covers them.",
        )?;
        let consumer_replacements = IntCounter::new(
            "lumen_sink_consumer_replacements_total",
            "Kafka consumers replaced because a group call never returned or the group had no coordinator for 45 s.",
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "lumen_sink_consumer_lag_messages",
                "Records between the committed offset and the end of the partition.",
            ),
            &["partition"],
        )?;
        let paused_partitions = IntGauge::new(
            "lumen_sink_paused_partitions",
            "Partitions not read because their batches wait for ClickHouse.",
        )?;
        let buffered_rows = IntGauge::new(
            "lumen_sink_buffered_rows",
            "Records read and not yet acknowledged by ClickHouse.",
        )?;
        let buffered_bytes = IntGauge::new(
            "lumen_sink_buffered_bytes",
            "Payload bytes of the records read and not yet acknowledged by ClickHouse.",
        )?;
        let last_insert = LastInsert::new()?;
        let collectors: [Box<dyn Collector>; 14] = [
            Box::new(records_consumed.clone()),
            Box::new(rows_written.clone()),
            Box::new(duplicates.clone()),
            Box::new(batch_rows.clone()),
            Box::new(insert_duration.clone()),
            Box::new(retries.clone()),
            Box::new(dlq_rows.clone()),
            Box::new(commit_failures.clone()),
            Box::new(consumer_replacements.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(paused_partitions.clone()),
            Box::new(buffered_rows.clone()),
            Box::new(buffered_bytes.clone()),
            Box::new(last_insert.clone()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            records_consumed,
            rows_written,
            duplicates,
            batch_rows,
            insert_duration,
            retries,
            dlq_rows,
            commit_failures,
            consumer_replacements,
            consumer_lag,
            paused_partitions,
            buffered_rows,
            buffered_bytes,
            last_insert,
        })
    }

    /// Records what the consume loop holds in memory, read and not yet
    /// acknowledged.
    pub fn buffered(&self, held: Held) {
        self.buffered_rows.set(held.records as i64);
        self.buffered_bytes.set(held.bytes as i64);
    }

    /// Records an acknowledged insert.
    pub fn inserted(&self, rows: usize, started: Instant) {
        self.rows_written.inc_by(rows as u64);
        self.batch_rows.observe(rows as f64);
        self.insert_duration
            .observe(started.elapsed().as_secs_f64());
        self.last_insert.touch();
    }
}

/// `lumen_sink_seconds_since_last_insert`, computed at scrape time (since
/// start-up until the first insert), so that a stalled sink shows a rising
/// value without anyone doing arithmetic on timestamps.
#[derive(Clone)]
struct LastInsert {
    desc: Desc,
    at: Arc<Mutex<Instant>>,
}

impl LastInsert {
    const NAME: &'static str = "lumen_sink_seconds_since_last_insert";
    const HELP: &'static str =
        "Seconds since ClickHouse last acknowledged an insert (since start-up before the first).";

    fn new() -> prometheus::Result<Self> {
        Ok(Self {
            desc: Desc::new(
                Self::NAME.to_owned(),
                Self::HELP.to_owned(),
                Vec::new(),
                Default::default(),
            )?,
            at: Arc::new(Mutex::new(Instant::now())),
        })
    }

    fn touch(&self) {
        if let Ok(mut at) = self.at.lock() {
            *at = Instant::now();
        }
    }
}

impl Collector for LastInsert {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let seconds = self
            .at
            .lock()
            .map(|at| at.elapsed().as_secs_f64())
            .unwrap_or(f64::NAN);
        match Gauge::new(Self::NAME, Self::HELP) {
            Ok(gauge) => {
                gauge.set(seconds);
                gauge.collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    #[test]
    fn every_metric_is_named_for_the_sink_and_exported() {
        let metrics = Metrics::new().expect("metrics");
        metrics.inserted(10, Instant::now());
        metrics.retries.with_label_values(&["network"]).inc();
        metrics.dlq_rows.with_label_values(&["bad_magic"]).inc();
        metrics.consumer_lag.with_label_values(&["0"]).set(3);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut text)
            .expect("encode");
        let text = String::from_utf8(text).expect("utf8");
        for name in [
            "lumen_sink_rows_written_total 10",
            "lumen_sink_batch_rows_bucket",
            "lumen_sink_insert_duration_seconds_bucket",
            "lumen_sink_retries_total{reason=\"network\"} 1",
            "lumen_sink_dlq_rows_total{reason=\"bad_magic\"} 1",
            "lumen_sink_consumer_lag_messages{partition=\"0\"} 3",
            "lumen_sink_seconds_since_last_insert",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        for family in metrics.registry.gather() {
            assert!(
                family.name().starts_with("lumen_sink_"),
                "{}",
                family.name()
            );
        }
    }
}
