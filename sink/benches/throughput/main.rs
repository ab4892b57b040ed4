//! `make bench-sink` (`cargo bench -p lumen-sink`): the sink against
//! ClickHouse's own limits, in one run, on the same rows, into the same
//! table (`events` of a private database migrated with the real
//! migrations, materialized views included). Needs Kafka and ClickHouse
//! (`make up`).
//!
//! - **(a) sink**: the release binary `lumen-sink` (a child process, with the
//!   product's defaults) reads a private topic preloaded with N enriched Avro
//!   records; rows/s from its start (once `spawn` returns, the sink having
//!   exec'd) to the acknowledgement of its last insert (all N rows
//!   queryable; the time comes from its `/metrics`), and from its first
//!   record read to the same end.
//! - **(b) HTTP RowBinary**: the same rows, encoded by ClickHouse itself
//!   (`SELECT * FROM <a>.events FORMAT RowBinary`) and LZ4-compressed before
//!   the clock starts, POSTed as `INSERT INTO events FORMAT RowBinary` in
//!   batches of at most `--batch-max-rows`, one lane per Kafka partition
//!   like the sink's one insert in flight per partition. No Kafka, no dedup
//!   token: ClickHouse's ingest limit. Target: (a) ≥ 0.8 × (b).
//! - (a) and (b) run in alternating rounds, `LUMEN_BENCH_ROUNDS` (3) of
//!   each, each (a) on a topic and database of its own, and the report
//!   takes the median run of each. A single pair decided the verdict
//!   before: on this shared machine ClickHouse's CPU for the same inserts
//!   moved between 6.4 and 7.9 CPU-s per 1M rows from one phase to the
//!   next, and (a)/(b) between 0.71 and 0.88 over 8 runs of one build.
//! - **(b') the same, deduplicated**: (b) with the sink's deduplication
//!   settings and a token per batch (`insert::deduplicated`). No target:
//!   (b') / (b) is what exactly-once inserts cost ClickHouse, (a) / (b')
//!   what is left to the sink and Kafka.
//! - **(b'') (b') over (a)'s time**: each lane's inserts of (b') spread
//!   evenly over as long as (a) took. No target: ClickHouse merges parts in
//!   the background while inserts arrive, and the short (b) and (b') end
//!   before most of those merges, so their CPU per row is not what the same
//!   inserts cost over (a)'s longer run; (b'')'s is.
//! - **(c) Kafka engine**: ClickHouse's Kafka table engine and a
//!   materialized view into `events`, reading a mirror topic with the same
//!   rows as one RowBinary row per message (see `baselines.rs` for why).
//!   Rows/s from creating the view, and from the engine's first message
//!   read, to all rows queryable. Target: (a) ≥ 1.0 × (c).
//! - **(d) latency**: enriched records produced at a steady rate (10 000/s
//!   for 20 s by default), `received_at` = produce time; ClickHouse polled
//!   every 50 ms; p50/p99 of (first poll that sees a row − its produce time)
//!   with the sink's default `--batch-max-age-ms` (1 000). Target: p99 < 2 s.
//! - **(e) memory**: VmHWM of the sink process during (a) and (d). Target:
//!   < 100 MiB.
//!
//! Every figure is checked: exactly N rows, none twice, every offset
//! committed, every aggregate equal to a recount over `events`.
//!
//! Environment: `LUMEN_CLICKHOUSE_URL`, `LUMEN_KAFKA_BROKERS`,
//! `LUMEN_BENCH_ROWS` (default 1 000 000: at 200 000 the sink's fixed
//! costs, start, group join and the first batches to fill, weigh on its
//! run), `LUMEN_BENCH_WARM_UP_ROWS` (rows of an untimed (a) first, to warm
//! the broker's JIT; default `LUMEN_BENCH_ROWS`, 0 for none),
//! `LUMEN_BENCH_LATENCY_SECONDS`
//! (20), `LUMEN_BENCH_LATENCY_RATE` (rows/s, 10 000),
//! `LUMEN_BENCH_ENGINE_CONSUMERS` (1), `LUMEN_BENCH_SKIP` (letters of the
//! phases not to run, `c` and `d`: (b) needs (a)'s rows); the sink's own
//! `LUMEN_SINK_*` variables reach the child and size the baselines alike.
//!
//! Beside rows/s, each throughput run reports the CPU-seconds per million
//! rows of the sink, ClickHouse and Kafka (`cpu.rs`): on this shared
//! machine the rates move with the other load, the CPU per row much less.
//!
//! Figures, before and after, and why: `sink/README.md` ("Benchmark").

#[path = "../../tests/it/harness.rs"]
#[allow(dead_code)] // Shared with the integration tests; the bench uses a part.
mod harness;

mod baselines;
mod cpu;
mod latency;
mod process;

use std::future::Future;
use std::time::{Duration, Instant};

use clap::Parser;
use clickhouse::Client;
use harness::{Harness, clickhouse_url};

use crate::baselines::Pace;
use crate::cpu::{Servers, Usage};
use crate::latency::Latency;
use crate::process::SinkProcess;

/// How often a timed run looks at its contender (the sink's `/metrics`,
/// or ClickHouse for the Kafka engine). Every look costs the contender CPU
/// on the same two cores: at 20 ms, serving `/metrics` (a connection per
/// look) was 6–11% of the sink's CPU in (a) (perf). 100 ms errs by at most
/// 0.5% on a 20 s run.
const POLL: Duration = Duration::from_millis(100);

/// How often a timed run looks until the contender reads its first record:
/// the contender has little else to do then, and at [`POLL`] the first read
/// was seen up to 100 ms late, which made the rate once reading started up
/// to 2% too high on a 5 s run.
const FIRST_READ_POLL: Duration = Duration::from_millis(10);

/// Records per producer call: below librdkafka's default queue of 100 000.
const PRODUCE_CHUNK: usize = 50_000;

/// Sizes of the run, from the environment.
pub struct Settings {
    /// Rows of (a), (b) and (c).
    pub rows: usize,
    /// Rows of the untimed warm-up before (a); 0 for none.
    pub warm_up_rows: usize,
    /// Rounds of (a) then (b).
    pub rounds: usize,
    /// Duration of (d).
    pub latency_for: Duration,
    /// Rows per second in (d).
    pub latency_rate: usize,
    /// Kafka engine consumers in (c).
    pub engine_consumers: usize,
    /// The sink's batch bounds as the child process will read them.
    pub batch: lumen_sink::config::BatchConfig,
    /// Phases not to run (`c`, `d`).
    pub skip: String,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: usize| -> usize {
            std::env::var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} is a number: {v}"))
            })
        };
        let sink = lumen_sink::Config::try_parse_from(["lumen-sink"])
            .expect("the LUMEN_SINK_* variables parse");
        let rows = number("LUMEN_BENCH_ROWS", 1_000_000);
        Self {
            rows,
            warm_up_rows: number("LUMEN_BENCH_WARM_UP_ROWS", rows),
            rounds: number("LUMEN_BENCH_ROUNDS", 3).max(1),
            latency_for: Duration::from_secs(number("LUMEN_BENCH_LATENCY_SECONDS", 20) as u64),
            latency_rate: number("LUMEN_BENCH_LATENCY_RATE", 10_000),
            engine_consumers: number("LUMEN_BENCH_ENGINE_CONSUMERS", 1),
            batch: sink.batch,
            skip: std::env::var("LUMEN_BENCH_SKIP").unwrap_or_default(),
        }
    }

    fn runs(&self, phase: char) -> bool {
        !self.skip.contains(phase)
    }
}

/// Rows landed in a timed run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    rows: usize,
    /// From the start of the run to all rows queryable.
    total: Duration,
    /// From the start of the run to the first record read, when the
    /// contender tells.
    first_read: Option<Duration>,
    /// CPU spent over the run.
    cpu: Usage,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.total.as_secs_f64()
    }

    /// `seconds` of CPU per million of the run's rows.
    fn per_million(&self, seconds: Option<f64>) -> Option<f64> {
        seconds.map(|seconds| seconds * 1e6 / self.rows as f64)
    }

    /// Rows/s once reading started: without process start and group join.
    fn reading_rate(&self) -> Option<f64> {
        self.first_read
            .map(|first| self.rows as f64 / (self.total - first).as_secs_f64())
    }
}

/// A harness for one phase, with its database `lumen_bench_sink_<name>`
/// fresh and migrated.
pub async fn phase(name: &str) -> Harness {
    let mut harness = Harness::new(&format!("bench_{name}")).await;
    harness.database = format!("lumen_bench_sink_{name}");
    drop_database(&harness).await;
    lumen_sink::migrate(&harness.config())
        .await
        .expect("migrate");
    harness
}

/// Drops the phase's database (its topics go with the harness).
pub async fn drop_database(harness: &Harness) {
    Client::default()
        .with_url(clickhouse_url())
        .query(&format!(
            "DROP DATABASE IF EXISTS {} SYNC",
            harness.database
        ))
        .execute()
        .await
        .expect("drop bench database");
}

/// Waits until `harness`'s `events` holds `rows` rows, polling every
/// [`POLL`] ([`FIRST_READ_POLL`] until the first read): `reading` says
/// whether the contender has read a record yet, `landed` how many rows it
/// knows ClickHouse acknowledged. ClickHouse is counted only once `landed`
/// reaches `rows`: a `count()` costs it ~5 ms of CPU, and 50 a second would
/// be taken from the contender being measured.
pub async fn watch<R, RFut, L, LFut>(
    harness: &Harness,
    rows: usize,
    started: Instant,
    mut reading: R,
    mut landed: L,
) -> Throughput
where
    R: FnMut() -> RFut,
    RFut: Future<Output = bool>,
    L: FnMut() -> LFut,
    LFut: Future<Output = u64>,
{
    let rows = rows as u64;
    let mut first_read = None;
    loop {
        if first_read.is_none() && reading().await {
            first_read = Some(started.elapsed());
        }
        if landed().await >= rows && harness.count("events").await >= rows {
            return Throughput {
                rows: rows as usize,
                total: started.elapsed(),
                first_read,
                cpu: Usage::default(),
            };
        }
        assert!(
            started.elapsed() < harness::DEADLINE,
            "{} of {rows} rows after {:?}",
            harness.count("events").await,
            harness::DEADLINE
        );
        tokio::time::sleep(if first_read.is_none() {
            FIRST_READ_POLL
        } else {
            POLL
        })
        .await;
    }
}

/// The release binary, spawned on a fresh topic preloaded with `rows`
/// records and the fresh database of phase `name`, timed from its exec to
/// ClickHouse's acknowledgement of its last insert; still running, for its
/// metrics.
async fn drain_backlog(name: &str, rows: usize) -> (Harness, Throughput, SinkProcess) {
    let harness = phase(name).await;
    for chunk in harness::events(0, rows as u64).chunks(PRODUCE_CHUNK) {
        harness.produce(chunk).await;
    }
    let servers = Servers::find();
    let before = servers.now(None);
    let sink = SinkProcess::spawn(&harness);
    // From the sink's exec, which `spawn` waits for: the call took 0.3 ms
    // in most rounds, but 274 ms once, in this process (holding (b)'s
    // encoded rows), before the sink ran at all.
    let started = Instant::now();
    let mut run = watch(
        &harness,
        rows,
        started,
        || async { sink.records_read().await > 0 },
        || sink.rows_written(),
    )
    .await;
    run.cpu = servers.now(Some(sink.pid())).since(&before);
    // `watch` sees the last insert up to a poll late, when (b) ends at its
    // last acknowledgement: the sink tells how long ago ClickHouse
    // acknowledged its last insert (read after the fact, so the run is
    // counted the scrape's latency long, never shorter).
    let since_last_insert = Duration::from_secs_f64(sink.seconds_since_last_insert().await);
    run.total = started.elapsed().saturating_sub(since_last_insert);
    (harness, run, sink)
}

/// An untimed (a) before the timed phases. A broker started minutes ago
/// still compiles its produce and fetch paths: its C2 compiler threads
/// took 0.3 to 1.2 CPU-s during single (a) runs of 1M rows on a broker
/// 14 minutes old, time (a) lost on the two cores it shares, while the
/// broker's own fetch work was 0.1 to 0.2 CPU-s. The warm-up runs the same
/// produce and drain first, so (a) and (c) meet a broker in the state this
/// very work leaves it in.
async fn warm_up(settings: &Settings) {
    if settings.warm_up_rows == 0 {
        return;
    }
    let (harness, run, sink) = drain_backlog("warm_up", settings.warm_up_rows).await;
    println!(
        "warm-up (untimed): {} rows in {:.2} s, Kafka {:.2} CPU-s",
        run.rows,
        run.total.as_secs_f64(),
        run.cpu.kafka.unwrap_or_default()
    );
    sink.terminate().await;
    drop_database(&harness).await;
}

/// (a) and the memory of (e): the release binary drains a preloaded topic,
/// into the database of phase `name`.
async fn sink_throughput(settings: &Settings, name: &str) -> (Harness, Throughput, u64) {
    let n = settings.rows as u64;
    let (harness, run, sink) = drain_backlog(name, settings.rows).await;
    // How much of the run the partitions' insert lanes had an insert
    // waiting for ClickHouse: the rest they spent recording intents,
    // waiting for records or idle.
    let busy =
        sink.insert_seconds().await / (run.total.as_secs_f64() * f64::from(harness::PARTITIONS));
    // Every insert is a part in each table: fewer, larger ones cost
    // ClickHouse less per row, so batches cut below the size bound (by age
    // or the read-ahead budget) show here.
    let inserts = sink.inserts().await;
    println!(
        "(a) inserts in flight {:.0}% of the run, on average over the {} partitions; {inserts} inserts of {:.0} rows on average; {} retries",
        busy * 100.0,
        harness::PARTITIONS,
        n as f64 / inserts.max(1) as f64,
        sink.retries().await
    );
    let peak = sink.peak_rss_bytes();
    harness.expect_exactly(n).await;
    sink.terminate().await;
    (harness, run, peak)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

struct Report {
    settings: Settings,
    /// (a) and (b) of each round, in order.
    rounds: Vec<(Throughput, Throughput)>,
    /// The median (a).
    sink: Throughput,
    /// The highest VmHWM of the (a) runs.
    sink_peak: u64,
    /// The median (b).
    http: Throughput,
    http_deduplicated: Throughput,
    http_paced: Throughput,
    engine: Option<Throughput>,
    latency: Option<Latency>,
}

impl Report {
    fn print(&self) {
        let Self {
            settings,
            rounds,
            sink,
            http,
            http_deduplicated,
            http_paced,
            engine,
            latency,
            ..
        } = self;
        let reading = |run: &Throughput| {
            run.reading_rate()
                .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"))
        };
        println!();
        println!(
            "sink benchmark: {} rows, {} partitions, batches of at most {} rows, max age {} ms; (a) and (b) the median of {} alternating rounds",
            settings.rows,
            harness::PARTITIONS,
            settings.batch.max_rows,
            settings.batch.max_age_ms,
            rounds.len()
        );
        let per_round: Vec<String> = rounds
            .iter()
            .map(|(sink, http)| {
                format!(
                    "{:.0}/{:.0} = {:.2}",
                    sink.rate(),
                    http.rate(),
                    sink.rate() / http.rate()
                )
            })
            .collect();
        println!("rounds, (a)/(b) rows/s: {}", per_round.join(", "));
        println!("{:<46} {:>12} {:>14}", "", "rows/s", "rows/s reading");
        let runs = [
            ("(a) sink, Kafka -> ClickHouse", Some(sink)),
            ("(b) HTTP RowBinary, pre-encoded, no Kafka", Some(http)),
            (
                "(b') (b) with the sink's deduplication",
                Some(http_deduplicated),
            ),
            ("(b'') (b') spread over (a)'s time", Some(http_paced)),
            ("(c) Kafka engine + materialized view", engine.as_ref()),
        ];
        for (name, run) in runs.iter().filter_map(|(name, run)| Some((name, (*run)?))) {
            println!("{name:<46} {:>12.0} {:>14}", run.rate(), reading(run));
        }
        let to_http = sink.rate() / http.rate();
        println!(
            "{:<46} {to_http:>12.2} {:>14}   target >= 0.80: {}",
            "ratio (a) / (b)",
            ratio(sink.reading_rate(), http.rate()),
            verdict(to_http >= 0.8)
        );
        println!(
            "{:<46} {:>12.2} {:>14}   (the sink's own cost; (b') / (b) {:.2} is ClickHouse's for exactly-once)",
            "ratio (a) / (b')",
            sink.rate() / http_deduplicated.rate(),
            ratio(sink.reading_rate(), http_deduplicated.rate()),
            http_deduplicated.rate() / http.rate()
        );
        if let Some(engine) = engine {
            let to_engine = sink.rate() / engine.rate();
            println!(
                "{:<46} {to_engine:>12.2} {:>14}   target >= 1.00: {}",
                "ratio (a) / (c)",
                ratio(
                    sink.reading_rate(),
                    engine.reading_rate().unwrap_or(engine.rate())
                ),
                verdict(to_engine >= 1.0)
            );
        }
        println!(
            "{:<46} {:>8} {:>11} {:>8}",
            "CPU seconds per 1M rows", "sink", "ClickHouse", "Kafka"
        );
        for (name, run) in runs
            .iter()
            .take(4)
            .filter_map(|(name, run)| Some((name, (*run)?)))
        {
            let per_million = |seconds: Option<f64>| {
                run.per_million(seconds)
                    .map_or_else(|| "-".to_owned(), |seconds| format!("{seconds:.1}"))
            };
            println!(
                "{:<46} {:>8} {:>11} {:>8}",
                name.split_once(' ').map_or(*name, |(label, _)| label),
                per_million(run.cpu.sink),
                per_million(run.cpu.clickhouse),
                per_million(run.cpu.kafka)
            );
        }
        let clickhouse = |run: &Throughput| run.per_million(run.cpu.clickhouse);
        if let (Some(in_sink), Some(paced), Some(back_to_back)) = (
            clickhouse(sink),
            clickhouse(http_paced),
            clickhouse(http_deduplicated),
        ) {
            println!(
                "ClickHouse CPU s per 1M rows: (a) - (b'') {:+.1} is the sink's way of inserting, (b'') - (b') {:+.1} the background work of a run as long as (a)",
                in_sink - paced,
                paced - back_to_back
            );
        }
        if let Some(latency) = latency {
            println!(
                "(d) latency at {:.0} rows/s for {:?}, {} rows: p50 {} ms, p99 {} ms, max {} ms (mean insert {} ms)   target p99 < 2000 ms: {}",
                latency.achieved_rate,
                settings.latency_for,
                latency.rows,
                latency.p50_ms,
                latency.p99_ms,
                latency.max_ms,
                latency.mean_insert.as_millis(),
                verdict(latency.p99_ms < 2_000)
            );
        }
        let peaks = [
            ("(e) sink VmHWM during (a)", Some(self.sink_peak)),
            (
                "(e) sink VmHWM during (d)",
                latency.as_ref().map(|l| l.sink_peak),
            ),
        ];
        for (name, peak) in peaks
            .iter()
            .filter_map(|(name, peak)| Some((name, (*peak)?)))
        {
            println!(
                "{name:<46} {:>8.1} MiB   target < 100 MiB: {}",
                mib(peak),
                verdict(mib(peak) < 100.0)
            );
        }
    }
}

fn ratio(sink: Option<f64>, baseline: f64) -> String {
    sink.map_or_else(|| "-".to_owned(), |sink| format!("{:.2}", sink / baseline))
}

/// The run of median rate among `runs` (of an even count, the slower of
/// the middle two).
fn median(runs: &[Throughput]) -> Throughput {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    sorted[(sorted.len() - 1) / 2]
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_env();
    warm_up(&settings).await;
    // (a) and (b) alternate, so that a slower or faster spell of this
    // shared machine weighs on both; the report compares their medians.
    let mut source: Option<Harness> = None;
    let mut encoded = None;
    let mut rounds = Vec::new();
    let mut sink_peak = 0;
    for round in 1..=settings.rounds {
        let (harness, sink, peak) =
            sink_throughput(&settings, &format!("throughput_{round}")).await;
        println!("(a) round {round}: {sink:?}");
        let encoded = match &encoded {
            Some(encoded) => encoded,
            None => encoded.insert(baselines::encode(&settings, &harness).await),
        };
        let http = baselines::http(&settings, encoded, Pace::Bare).await;
        println!("(b) round {round}: {http:?}");
        rounds.push((sink, http));
        sink_peak = sink_peak.max(peak);
        match source {
            None => source = Some(harness),
            Some(_) => drop_database(&harness).await,
        }
    }
    let source = source.expect("at least one round");
    let encoded = encoded.expect("at least one round");
    let sink = median(&rounds.iter().map(|(sink, _)| *sink).collect::<Vec<_>>());
    let http = median(&rounds.iter().map(|(_, http)| *http).collect::<Vec<_>>());
    let http_deduplicated = baselines::http(&settings, &encoded, Pace::Deduplicated).await;
    println!("(b') HTTP RowBinary, deduplicated: {http_deduplicated:?}");
    let http_paced = baselines::http(&settings, &encoded, Pace::DeduplicatedOver(sink.total)).await;
    println!("(b'') HTTP RowBinary, deduplicated, over (a)'s time: {http_paced:?}");
    drop(encoded);
    let mut engine = None;
    if settings.runs('c') {
        let run = baselines::kafka_engine(&settings, &source).await;
        println!("(c) Kafka engine: {run:?}");
        engine = Some(run);
    }
    drop_database(&source).await;
    drop(source);
    let latency = if settings.runs('d') {
        Some(latency::run(&settings).await)
    } else {
        None
    };
    Report {
        settings,
        rounds,
        sink,
        sink_peak,
        http,
        http_deduplicated,
        http_paced,
        engine,
        latency,
    }
    .print();
}
