//! (d): Kafka-to-queryable latency at a steady rate, and the sink's memory
//! meanwhile. Records are produced in ticks of 10 ms, each tick's rows with
//! `received_at` = the tick's produce time (ms). ClickHouse is polled every
//! 50 ms for the rows visible per `received_at`; a row's latency is the
//! answer time of the first poll that counts it minus its produce time, so
//! it errs high by up to one poll (and the query's own time), never low.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_sink::row::sample;
use tokio::task::JoinSet;

use crate::harness::{self, Harness, eventually, now_ms};
use crate::process::SinkProcess;
use crate::{Settings, drop_database, phase};

/// Producer tick.
const TICK: Duration = Duration::from_millis(10);

/// How often ClickHouse is asked what is visible.
const POLL: Duration = Duration::from_millis(50);

/// Rows written before the clock: the sink has joined its group and
/// inserted once.
const WARM_UP: u64 = 100;

/// First event number of the timed rows, after the warm-up's.
const FIRST_TIMED: u64 = 1_000_000;

/// What (d) measured.
pub struct Latency {
    /// Rows produced at the steady rate.
    pub rows: usize,
    /// Rows per second actually produced.
    pub achieved_rate: f64,
    /// Median latency.
    pub p50_ms: i64,
    /// 99th percentile.
    pub p99_ms: i64,
    /// Worst row.
    pub max_ms: i64,
    /// VmHWM of the sink.
    pub sink_peak: u64,
    /// The sink's mean insert duration (the rest is batching by age).
    pub mean_insert: Duration,
}

/// Runs (d) with the sink's default batch bounds (or the environment's).
pub async fn run(settings: &Settings) -> Latency {
    let harness = Arc::new(phase("latency").await);
    let sink = SinkProcess::spawn(&harness);
    harness.produce(&harness::events(0, WARM_UP)).await;
    eventually("warm-up rows visible", || async {
        harness.count("events").await == WARM_UP
    })
    .await;

    let start_ms = now_ms();
    let started = Instant::now();
    let mut producer = Some(tokio::spawn(produce_steadily(
        harness.clone(),
        settings.latency_rate,
        settings.latency_for,
    )));
    let mut produced = None;
    let mut visible_per_ms: HashMap<i64, u64> = HashMap::new();
    let mut latencies: Vec<i64> = Vec::new();
    let client = harness.clickhouse();
    loop {
        let visible: Vec<(i64, u64)> = client
            .query(
                "SELECT toUnixTimestamp64Milli(received_at) AS t, count() FROM events \
                 WHERE received_at >= fromUnixTimestamp64Milli(?) GROUP BY t",
            )
            .bind(start_ms)
            .fetch_all()
            .await
            .expect("visible rows");
        let answered = now_ms();
        for (at, count) in visible {
            let before = visible_per_ms.insert(at, count).unwrap_or(0);
            latencies.extend(std::iter::repeat_n(
                answered - at,
                (count - before) as usize,
            ));
        }
        if let Some(done) = producer.take_if(|task| task.is_finished()) {
            produced = Some(done.await.expect("producer"));
        }
        if produced.is_some_and(|(rows, _)| rows == latencies.len()) {
            break;
        }
        assert!(
            started.elapsed() < settings.latency_for + harness::DEADLINE,
            "{} rows visible of {produced:?}",
            latencies.len()
        );
        tokio::time::sleep(POLL).await;
    }
    let (_, producing) = produced.expect("producer finished");
    let sink_peak = sink.peak_rss_bytes();
    let mean_insert = sink.mean_insert().await;
    harness
        .expect_exactly(WARM_UP + latencies.len() as u64)
        .await;
    sink.terminate().await;
    drop_database(&harness).await;

    latencies.sort_unstable();
    let percentile = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[index]
    };
    Latency {
        rows: latencies.len(),
        achieved_rate: latencies.len() as f64 / producing.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        max_ms: percentile(1.0),
        sink_peak,
        mean_insert,
    }
}

/// Produces `rate` rows/s for `duration`, each tick's rows stamped with
/// the tick's time; returns how many, in how long. Acknowledgements are awaited off the
/// tick, so a slow ack never delays the next tick.
async fn produce_steadily(
    harness: Arc<Harness>,
    rate: usize,
    duration: Duration,
) -> (usize, Duration) {
    let per_tick = (rate as u64 * TICK.as_millis() as u64 / 1_000).max(1);
    let mut tick = tokio::time::interval(TICK);
    let mut acks = JoinSet::new();
    let started = Instant::now();
    let mut next = FIRST_TIMED;
    while started.elapsed() < duration {
        tick.tick().await;
        let at = now_ms();
        let events: Vec<_> = (next..next + per_tick)
            .map(|n| sample::event(n, at))
            .collect();
        next += per_tick;
        let harness = harness.clone();
        acks.spawn(async move { harness.produce(&events).await });
    }
    let producing = started.elapsed();
    acks.join_all().await;
    ((next - FIRST_TIMED) as usize, producing)
}
