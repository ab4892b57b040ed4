//! `make bench-ingest`: `lumen-ingest`'s hot path, each figure next to a
//! baseline measured in the same run.
//!
//! In this process, no sockets, no Kafka (where the CPU goes):
//!
//! - event work: decode + validate + encode of a 50-pageview batch, vs
//!   `serde_json` parsing the same body into a `Value`;
//! - router: the whole ingest router with a producer that discards, vs a
//!   bare axum handler that reads the body and answers 202.
//!
//! Against the real release binary `lumen-ingest` run as a child process,
//! writing to an ephemeral topic of the Kafka at `LUMEN_KAFKA_BROKERS`
//! (default 127.0.0.1:9092; skipped when none answers), loaded over
//! keep-alive connections by a hyper client in this process:
//!
//! - (a) pixel: `GET /p?…` req/s, closed loop, vs a bare hyper server
//!   answering 204 (its own runtime, as many workers as the binary).
//!   Target: ≥ 0.60 of the bare server's req/s.
//! - (b) batch: `POST /v1/events` of 50 pageviews, events/s, closed loop,
//!   vs a bare rdkafka producer with ingest's producer settings sending the
//!   same Avro records under the same keys as fast as librdkafka takes them,
//!   counting acknowledged records. Target: ≥ 0.80 of the bare producer.
//! - (c) single-event `POST /v1/events`: the closed-loop peak req/s, then
//!   p50/p99 latency at a fixed rate of half that peak, counted from each
//!   request's due time (no coordinated omission). Target: p99 < 20 ms.
//! - (d) the binary's memory from `/proc/<pid>/status`: `VmHWM` (peak over
//!   its life) and `VmRSS` after each load. Target: < 100 MiB.
//!
//! Ingest answers only after Kafka acknowledged (acks=all, linger 5 ms), so
//! a closed loop over few connections measures that wait, not capacity. At
//! the default 256 connections the pixel load is still bound by it (ingest
//! used 0.74 of a core on a quiet machine, its rate about 256 over the
//! median latency); 512 or 1024 reach its CPU capacity, but raise (c)'s
//! peak and the memory of (b) and (c) with them (ingest/README.md). The
//! bare baselines wait for nothing. Every load also prints the server's CPU
//! time per event (ingest's process, the bare server's threads, the bare
//! producer's process, from `/proc`), and the table compares them for (a)
//! and (b): those ratios move less than the rates when other processes
//! share the cores (2.7–4.1× for the pixel's on a loaded machine). The in-process figures are the fastest wall time per
//! call over chunks of 10 calls (why: `in_process::measure`).
//!
//! Environment: `LUMEN_BENCH_SECONDS` (per load, default 5: the run takes
//! about 8 times that plus 10 s), `LUMEN_BENCH_CONNECTIONS` (default 256),
//! `LUMEN_KAFKA_BROKERS`, `LUMEN_INGEST_BIN` (default: the release binary
//! cargo builds for this bench).

mod bare_producer;
mod fixtures;
mod in_process;
mod load;
mod servers;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::bare_producer::Throughput;
use crate::fixtures::BATCH;
use crate::load::{Outcome, Pace, Shot};
use crate::servers::{BareHyper, Ingest, Usage};

/// Closed-loop load before each measured one, discarded: connections,
/// allocator and producer batches settle.
const WARM_UP: Duration = Duration::from_secs(1);
/// Partitions of the ephemeral topic, like a small `lumen.raw`.
const PARTITIONS: i32 = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Run settings.
struct Settings {
    seconds: Duration,
    connections: usize,
    brokers: String,
}

/// The figures against Kafka.
struct Loaded {
    bare_pixel: Measured,
    pixel: Measured,
    batch: Measured,
    bare_producer: Throughput,
    single_peak: Measured,
    single_half: Measured,
    usage: Usage,
}

fn main() {
    let settings = Settings {
        seconds: Duration::from_secs_f64(env_or("LUMEN_BENCH_SECONDS", 5.0)),
        connections: env_or("LUMEN_BENCH_CONNECTIONS", 256),
        brokers: env_or("LUMEN_KAFKA_BROKERS", "127.0.0.1:9092".to_owned()),
    };
    let body = fixtures::batch_body();
    println!(
        "lumen-ingest hot path: {BATCH}-pageview batches ({} bytes), {:?} per load, {} connections\n",
        body.len(),
        settings.seconds,
        settings.connections
    );
    let event_work = in_process::event_work(&body, settings.seconds / 2);
    print_pair("event work", event_work);
    let router_work = in_process::router_work(&body, settings.seconds / 2);
    print_pair("router", router_work);

    let loaded = if kafka_reachable(&settings.brokers) {
        Some(with_topic(&settings))
    } else {
        println!(
            "\nloads against Kafka skipped: no Kafka at {}",
            settings.brokers
        );
        None
    };
    print_table(&settings, event_work, router_work, loaded.as_ref());
}

fn kafka_reachable(brokers: &str) -> bool {
    brokers
        .split(',')
        .filter_map(|broker| std::net::ToSocketAddrs::to_socket_addrs(broker).ok())
        .flatten()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Runs the loads against a fresh topic, deleted afterwards even when a load panics.
fn with_topic(settings: &Settings) -> Loaded {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .expect("admin client");
    let options = AdminOptions::new();
    let topic = format!("lumen-ingest-bench-{}", std::process::id());
    let created = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &options,
        ))
        .expect("create topic");
    assert!(
        created.iter().all(Result::is_ok),
        "create topic: {created:?}"
    );
    let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(loads(settings, &topic))
    }));
    match runtime.block_on(admin.delete_topics(&[&topic], &options)) {
        Ok(deleted) if deleted.iter().all(Result::is_ok) => {}
        outcome => eprintln!("topic {topic} not deleted: {outcome:?}"),
    }
    loaded.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

async fn loads(settings: &Settings, topic: &str) -> Loaded {
    let pixel = fixtures::pixel();
    let batch = fixtures::batch();
    let single = fixtures::single();

    let bare = BareHyper::start();
    let bare_pixel = phase(
        "(a) bare hyper 204",
        Server::Bare(&bare),
        &pixel,
        Pace::ClosedLoop,
        settings,
    )
    .await;
    drop(bare);

    let ingest = Ingest::start(&settings.brokers, topic).await;
    let server = Server::Ingest(&ingest);
    let pixel = phase(
        "(a) ingest GET /p",
        server,
        &pixel,
        Pace::ClosedLoop,
        settings,
    )
    .await;
    let batch = phase(
        "(b) ingest POST batch",
        server,
        &batch,
        Pace::ClosedLoop,
        settings,
    )
    .await;
    let single_peak = phase(
        "(c) ingest POST 1 event",
        server,
        &single,
        Pace::ClosedLoop,
        settings,
    )
    .await;
    let half = Pace::Fixed(single_peak.outcome.per_second() / 2.0);
    let single_half = phase("(c) same at half the peak", server, &single, half, settings).await;
    let usage = ingest.usage();
    drop(ingest);

    let records = fixtures::Encoder::new().records(&fixtures::batch_body());
    let (brokers, topic, seconds) = (settings.brokers.clone(), topic.to_owned(), settings.seconds);
    let bare_producer = tokio::task::spawn_blocking(move || {
        bare_producer::run(&brokers, &topic, &records, seconds)
    })
    .await
    .expect("bare producer");
    println!(
        "{:<28} {:>10.0} events/s, CPU {:.1} µs/event, failed {}",
        "(b) bare rdkafka producer",
        bare_producer.per_second,
        micros(bare_producer.cpu_per_record),
        bare_producer.failed
    );
    Loaded {
        bare_pixel,
        pixel,
        batch,
        bare_producer,
        single_peak,
        single_half,
        usage,
    }
}

/// What a load is sent to.
#[derive(Clone, Copy)]
enum Server<'a> {
    /// The bare hyper baseline.
    Bare(&'a BareHyper),
    /// The binary, whose memory is also read after the load.
    Ingest(&'a Ingest),
}

impl Server<'_> {
    fn addr(self) -> SocketAddr {
        match self {
            Self::Bare(bare) => bare.addr,
            Self::Ingest(ingest) => ingest.public,
        }
    }

    /// CPU time the server used so far.
    fn cpu(self) -> Duration {
        match self {
            Self::Bare(bare) => bare.cpu(),
            Self::Ingest(ingest) => ingest.usage().cpu,
        }
    }
}

/// A load's outcome and the server's CPU time per event.
struct Measured {
    outcome: Outcome,
    cpu_per_event: Duration,
}

/// One measured load (after a discarded warm-up when closed-loop), printed.
async fn phase(
    name: &str,
    server: Server<'_>,
    shot: &Shot,
    pace: Pace,
    settings: &Settings,
) -> Measured {
    let addr = server.addr();
    if let Pace::ClosedLoop = pace {
        load::run(addr, shot, settings.connections, pace, WARM_UP).await;
    }
    let before = server.cpu();
    let outcome = load::run(addr, shot, settings.connections, pace, settings.seconds).await;
    let cpu = server.cpu() - before;
    let events = u32::try_from((outcome.answered * shot.events).max(1)).unwrap_or(u32::MAX);
    println!(
        "{name:<28} {:>8.0} req/s {:>8.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms  unexpected {}",
        outcome.per_second(),
        outcome.per_second() * shot.events as f64,
        millis(outcome.quantile(0.5)),
        millis(outcome.quantile(0.99)),
        outcome.unexpected
    );
    let memory = match server {
        Server::Ingest(ingest) => {
            let usage = ingest.usage();
            format!(
                "; VmRSS {:.1} MiB, VmHWM {:.1} MiB",
                mib(usage.rss_kib),
                mib(usage.peak_kib)
            )
        }
        Server::Bare(_) => String::new(),
    };
    println!(
        "{:<28} CPU {:.2} cores, {:.1} µs/event{memory}",
        "",
        cpu.as_secs_f64() / outcome.elapsed.as_secs_f64(),
        micros(cpu / events),
    );
    Measured {
        outcome,
        cpu_per_event: cpu / events,
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_pair(name: &str, (measured, baseline): (Duration, Duration)) {
    println!(
        "{name:<28} {:>10.1} µs/batch, baseline {:>8.1} µs/batch, {:.1}x",
        micros(measured),
        micros(baseline),
        measured.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The summary, as a Markdown table to paste into a note.
fn print_table(
    settings: &Settings,
    event_work: (Duration, Duration),
    router_work: (Duration, Duration),
    loaded: Option<&Loaded>,
) {
    println!(
        "\n{} s per load, {} keep-alive connections, Kafka {}\n",
        settings.seconds.as_secs_f64(),
        settings.connections,
        settings.brokers
    );
    println!("| figure | lumen-ingest | baseline | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for (name, baseline_name, (measured, baseline)) in [
        (
            "event work, µs per 50-event batch",
            "serde_json Value",
            event_work,
        ),
        (
            "router without Kafka, µs per batch",
            "bare axum 202",
            router_work,
        ),
    ] {
        println!(
            "| {name} | {:.1} | {baseline_name} {:.1} | {:.1}x | |",
            micros(measured),
            micros(baseline),
            measured.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    let Some(loaded) = loaded else {
        return;
    };
    let (pixel, bare_pixel) = (&loaded.pixel.outcome, &loaded.bare_pixel.outcome);
    let ratio = pixel.per_second() / bare_pixel.per_second();
    println!(
        "| (a) pixel GET /p, req/s | {:.0} | bare hyper 204 {:.0} | {ratio:.2} | ≥ 0.60 {} |",
        pixel.per_second(),
        bare_pixel.per_second(),
        verdict(ratio >= 0.6)
    );
    println!(
        "| (a) CPU µs per request | {:.1} | bare hyper 204 {:.1} | {:.1}x | |",
        micros(loaded.pixel.cpu_per_event),
        micros(loaded.bare_pixel.cpu_per_event),
        loaded.pixel.cpu_per_event.as_secs_f64() / loaded.bare_pixel.cpu_per_event.as_secs_f64()
    );
    let events = loaded.batch.outcome.per_second() * BATCH as f64;
    let bare = &loaded.bare_producer;
    let ratio = events / bare.per_second;
    println!(
        "| (b) POST {BATCH}-event batches, events/s | {events:.0} | bare rdkafka producer {:.0} | {ratio:.2} | ≥ 0.80 {} |",
        bare.per_second,
        verdict(ratio >= 0.8)
    );
    println!(
        "| (b) CPU µs per event | {:.1} | bare rdkafka producer {:.1} | {:.1}x | |",
        micros(loaded.batch.cpu_per_event),
        micros(bare.cpu_per_record),
        loaded.batch.cpu_per_event.as_secs_f64() / bare.cpu_per_record.as_secs_f64()
    );
    let (peak, half) = (&loaded.single_peak.outcome, &loaded.single_half.outcome);
    let p99 = half.quantile(0.99);
    println!(
        "| (c) 1-event POST p50 / p99 at {:.0} req/s (half the peak {:.0}) | {:.2} / {:.2} ms | | | p99 < 20 ms {} |",
        half.per_second(),
        peak.per_second(),
        millis(half.quantile(0.5)),
        millis(p99),
        verdict(p99 < Duration::from_millis(20))
    );
    println!(
        "| (d) memory VmHWM / VmRSS | {:.1} / {:.1} MiB | | | < 100 MiB {} |",
        mib(loaded.usage.peak_kib),
        mib(loaded.usage.rss_kib),
        verdict(loaded.usage.peak_kib < 100 * 1024)
    );
    let unexpected: usize = [
        &loaded.bare_pixel,
        &loaded.pixel,
        &loaded.batch,
        &loaded.single_peak,
        &loaded.single_half,
    ]
    .iter()
    .map(|measured| measured.outcome.unexpected)
    .sum();
    if unexpected > 0 || bare.failed > 0 {
        println!(
            "\nWARNING: {unexpected} unexpected HTTP answers, {} records the bare producer could not deliver",
            bare.failed
        );
    }
}
