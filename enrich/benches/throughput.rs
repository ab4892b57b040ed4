//! `make bench-enrich`, second part: throughput of the whole service
//! through real Kafka with transactions, against the Kafka + transactions
//! floor measured in the same run.
//!
//! 1. N raw events of the `lumen-traffic` mix (`common/mix.rs`: shares,
//!    the tokened visits they cause, in-app webviews, preview fetchers...)
//!    are written to a private 6-partition raw topic by ingest's own
//!    producer: Avro single-object payloads keyed by token or visitor id.
//! 2. Baseline (`throughput/copy.rs`): a bare loop copies the raw
//!    records unchanged to another topic, `read_committed`, one
//!    transaction with the consumer offsets per batch of the service's
//!    bounds (`--batch-max-events`, `--batch-max-wait-ms`: defaults, or
//!    `LUMEN_ENRICH_BATCH_*` from the environment, which the service
//!    inherits), through the service's transaction wrapper and client
//!    settings.
//! 3. The release `lumen-enrich` binary (the one cargo builds for this
//!    bench, or `LUMEN_ENRICH_BIN`) runs on private topics with its
//!    defaults.
//!
//! Each contender is timed from its start (process start, group join and
//! restore included) until its group's committed offsets reach the end of
//! the raw topic, and also from its first commit (steady state). Then:
//! exactness read back `read_committed` (N enriched events with N distinct
//! ids, one share record per share, no dead letter, N copies), the
//! service's CPU time per event (`/proc/<pid>/stat`, start to last commit),
//! its peak RSS (`VmHWM`) and its token store's estimated size.
//! Targets (issue #5): at least 50 000 events/s through the whole service;
//! under 100 MiB resident besides the token store.
//!
//! Needs Kafka (`make up`). Environment: `LUMEN_KAFKA_BROKERS`
//! (127.0.0.1:9092), `LUMEN_BENCH_EVENTS` (300 000), `LUMEN_ENRICH_BIN`.
//! The service's log goes to `.lumen/bench/<run>/enrich.log`; topics are
//! deleted at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use lumen_enrich::Config;
use lumen_enrich::config::PipelineConfig;
use lumen_runtime::TopicsConfig;
use lumen_schemas::{EnrichedEvent, RawEvent, ShareRecord};

#[path = "common/mix.rs"]
mod mix;
mod throughput {
    pub mod copy;
    pub mod kafka;
    pub mod service;
}

use mix::Composition;
use throughput::copy::Copy;
use throughput::kafka::{self, OffsetWatch, PARTITIONS, ReadBack, Topics};
use throughput::service::{self, Service};

/// Seed of the traffic mix: the same events in every run.
const SEED: u64 = 0x5eed_e4c4;
/// Whole-service rate wanted, events/s (issue #5).
const TARGET_EVENTS_PER_SECOND: f64 = 50_000.0;
/// Peak resident memory wanted besides the token store.
const TARGET_RSS_BYTES: f64 = 100.0 * MIB;
const MIB: f64 = 1024.0 * 1024.0;
/// How often committed offsets are read while a contender runs.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// When a contender committed what.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// From start to the first commit, and the records it covered.
    first_commit: (Duration, i64),
    /// From start to the last record committed.
    total: Duration,
}

impl Timing {
    fn rate_from_start(&self, records: i64) -> f64 {
        records as f64 / self.total.as_secs_f64()
    }

    fn rate_steady(&self, records: i64) -> f64 {
        let (at, committed) = self.first_commit;
        (records - committed) as f64 / (self.total - at).as_secs_f64()
    }
}

/// Waits until `group` has committed all `records` of `topic`, calling
/// `check` between reads (it panics if the contender died).
async fn until_committed(
    watch: &OffsetWatch,
    records: i64,
    started: Instant,
    mut check: impl FnMut(),
) -> Timing {
    // Generous: a slow machine, not a stuck contender.
    let deadline = Duration::from_secs(60).max(Duration::from_millis(records as u64));
    let mut first_commit = None;
    loop {
        let committed = watch.committed().await;
        let elapsed = started.elapsed();
        if committed > 0 && first_commit.is_none() {
            first_commit = Some((elapsed, committed));
        }
        if committed >= records {
            return Timing {
                first_commit: first_commit.unwrap_or((elapsed, committed)),
                total: elapsed,
            };
        }
        assert!(
            elapsed < deadline,
            "{committed} of {records} committed after {elapsed:?}"
        );
        check();
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// What the service reported about itself at the end.
struct ServiceFigures {
    timing: Timing,
    /// CPU seconds of the process from its start to the last commit.
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    token_store_bytes: f64,
    token_store_entries: f64,
    enriched_in: f64,
    duplicates_in: f64,
    token_hits: f64,
    transactions: f64,
    aborted: f64,
    mean_transaction_ms: f64,
}

async fn run_service(
    brokers: &str,
    topics: &TopicsConfig,
    run: &str,
    records: i64,
) -> ServiceFigures {
    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.lumen/bench")
        .join(run)
        .join("enrich.log");
    let watch = OffsetWatch::new(brokers, &format!("{run}.enrich"), &topics.raw);
    let started = Instant::now();
    let mut service = Service::start(
        &service::binary(),
        brokers,
        topics,
        &format!("{run}.enrich"),
        &log,
    );
    let timing = until_committed(&watch, records, started, || service.assert_running()).await;
    let cpu_seconds = service.cpu_seconds();
    let peak_rss_bytes = service.peak_rss_bytes();
    let metrics = service.metrics().await;
    let status = service.stop();
    assert!(status.success(), "lumen-enrich exited with {status}");
    let transactions = metrics.value("lumen_enrich_transactions_total{outcome=\"committed\"}");
    ServiceFigures {
        timing,
        cpu_seconds,
        peak_rss_bytes,
        token_store_bytes: metrics.value("lumen_enrich_token_store_bytes"),
        token_store_entries: metrics.value("lumen_enrich_token_store_entries"),
        enriched_in: metrics.value("lumen_enrich_events_in_total{outcome=\"enriched\"}"),
        duplicates_in: metrics.value("lumen_enrich_events_in_total{outcome=\"duplicate\"}"),
        token_hits: metrics.value("lumen_enrich_token_lookups_total{result=\"hit\"}"),
        transactions,
        aborted: metrics.value("lumen_enrich_transactions_total{outcome=\"aborted\"}"),
        mean_transaction_ms: 1000.0
            * metrics.value("lumen_enrich_transaction_duration_seconds_sum")
            / transactions.max(1.0),
    }
}

/// The service's batch bounds as the child will see them: defaults, or
/// `LUMEN_ENRICH_BATCH_*` from the environment it inherits.
fn pipeline() -> PipelineConfig {
    Config::try_parse_from(["lumen-enrich"])
        .expect("LUMEN_* variables the service accepts")
        .pipeline
}

async fn run_copy(brokers: &str, source: &str, target: &str, run: &str, records: i64) -> Timing {
    let pipeline = pipeline();
    let copy = Copy {
        brokers: brokers.to_owned(),
        source: source.to_owned(),
        target: target.to_owned(),
        group: format!("{run}.copy"),
        batch_max_events: pipeline.batch_max_events,
        batch_max_wait: Duration::from_millis(pipeline.batch_max_wait_ms),
    };
    let watch = OffsetWatch::new(brokers, &copy.group, &copy.source);
    let started = Instant::now();
    let task = tokio::spawn(async move { copy.run(records).await });
    let timing = until_committed(&watch, records, started, || {
        assert!(!task.is_finished(), "the copy stopped early");
    })
    .await;
    task.await.expect("copy");
    timing
}

/// Everything the run measured and read back.
struct Report {
    events: usize,
    composition: Composition,
    preload: Duration,
    copy: Timing,
    service: ServiceFigures,
    enriched: ReadBack,
    copied: ReadBack,
    shares: ReadBack,
    dead_letters: ReadBack,
}

async fn run(
    brokers: String,
    run: String,
    topics: TopicsConfig,
    copy_topic: String,
    events: Vec<RawEvent>,
) -> Report {
    let composition = Composition::of(&events);
    let records = events.len() as i64;
    let started = Instant::now();
    kafka::preload(&brokers, &topics.raw, &events).await;
    let preload = started.elapsed();
    let end = OffsetWatch::new(&brokers, &run, &topics.raw).end().await;
    assert_eq!(end, records, "the raw topic holds exactly the mix");

    let copy = run_copy(&brokers, &topics.raw, &copy_topic, &run, records).await;
    let service = run_service(&brokers, &topics, &run, records).await;
    let raw_id = |event: RawEvent| event.event_id;
    let enriched_id = |event: EnrichedEvent| event.event_id;
    let share_token = |record: ShareRecord| record.token;
    Report {
        events: events.len(),
        composition,
        preload,
        copy,
        service,
        enriched: kafka::read_back(&brokers, &topics.enriched, enriched_id).await,
        copied: kafka::read_back(&brokers, &copy_topic, raw_id).await,
        shares: kafka::read_back(&brokers, &topics.shares, share_token).await,
        dead_letters: kafka::read_back(&brokers, &topics.dlq, raw_id).await,
    }
}

impl Report {
    /// Prints the table; false when an exactness check failed.
    fn print(&self) -> bool {
        let n = self.events as i64;
        let pipeline = pipeline();
        println!(
            "lumen-enrich through Kafka: {} events of the lumen-traffic mix ({} shares, {} tokened visits), \
             {PARTITIONS} partitions, transactions of <= {} records / {} ms; preload {:.1} s",
            self.events,
            self.composition.shares,
            self.composition.tokened_visits,
            pipeline.batch_max_events,
            pipeline.batch_max_wait_ms,
            self.preload.as_secs_f64(),
        );
        println!("{:<40} {:>14} {:>18}", "", "from start", "from 1st commit");
        let row = |name: &str, timing: &Timing| {
            println!(
                "{name:<40} {:>10.0} ev/s {:>14.0} ev/s",
                timing.rate_from_start(n),
                timing.rate_steady(n)
            );
        };
        row("baseline: transactional copy", &self.copy);
        row("lumen-enrich (release binary)", &self.service.timing);
        println!(
            "{:<40} {:>14.2} {:>18.2}",
            "ratio enrich / baseline",
            self.service.timing.rate_from_start(n) / self.copy.rate_from_start(n),
            self.service.timing.rate_steady(n) / self.copy.rate_steady(n),
        );
        let rate = self.service.timing.rate_from_start(n);
        println!(
            "whole service, from start: {rate:.0} events/s (target {TARGET_EVENTS_PER_SECOND:.0}: {})",
            verdict(rate >= TARGET_EVENTS_PER_SECOND)
        );
        let service = &self.service;
        println!(
            "lumen-enrich CPU: {:.2} s, {:.2} us per event (every thread, from start to the last commit)",
            service.cpu_seconds,
            service.cpu_seconds * 1e6 / n as f64,
        );
        let rss = service.peak_rss_bytes as f64;
        let besides_store = rss - service.token_store_bytes;
        println!(
            "memory: VmHWM {:.1} MiB; token store {:.1} MiB (estimate, {:.0} shares); \
             besides it {:.1} MiB (target < {:.0} MiB: {})",
            rss / MIB,
            service.token_store_bytes / MIB,
            service.token_store_entries,
            besides_store / MIB,
            TARGET_RSS_BYTES / MIB,
            verdict(besides_store < TARGET_RSS_BYTES),
        );
        println!(
            "service: {:.0} transactions committed ({:.0} aborted), mean {:.1} ms; \
             {:.0} token lookups hit the store",
            service.transactions, service.aborted, service.mean_transaction_ms, service.token_hits,
        );
        let checks = [
            ("enriched records", self.enriched.records, self.events),
            (
                "distinct enriched events",
                self.enriched.distinct_events,
                self.events,
            ),
            (
                "share records",
                self.shares.records,
                self.composition.shares,
            ),
            ("dead letters", self.dead_letters.records, 0),
            ("copied records", self.copied.records, self.events),
            (
                "distinct copied events",
                self.copied.distinct_events,
                self.events,
            ),
            (
                "events enriched (metric)",
                service.enriched_in as usize,
                self.events,
            ),
            (
                "duplicates dropped (metric)",
                service.duplicates_in as usize,
                0,
            ),
        ];
        let mut exact = true;
        for (what, found, expected) in checks {
            let ok = found == expected;
            exact &= ok;
            println!(
                "exactness: {what:<28} {found:>8} (expected {expected}) {}",
                if ok { "ok" } else { "MISMATCH" }
            );
        }
        exact
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

#[tokio::main]
async fn main() {
    let brokers = env_or("LUMEN_KAFKA_BROKERS", "127.0.0.1:9092");
    let events: usize = env_or("LUMEN_BENCH_EVENTS", "300000")
        .parse()
        .expect("LUMEN_BENCH_EVENTS is a number");
    let name = format!("bench.enrich.{}", mix::now_ms());
    let mix = mix::raw_events(events, SEED);
    let topics = Topics::create(&brokers, &name).await;
    // A panic inside the run still deletes the topics before it surfaces.
    let outcome = tokio::spawn(run(
        brokers,
        name,
        topics.service.clone(),
        topics.copy.clone(),
        mix,
    ))
    .await;
    topics.delete().await;
    match outcome {
        Ok(report) => assert!(report.print(), "exactness check failed"),
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
