//! `lumen-traffic`: sends a realistic, seeded mix of readers to ingest and
//! prints the ground truth (expected visits per channel, shares, previews)
//! that ClickHouse must show once everything is delivered.

use std::time::Duration;

use clap::Parser;
use lumen_e2e::{Population, TrafficConfig, drive};

/// Realistic dark-social traffic for a Lumen ingest, with its ground truth.
#[derive(Debug, Parser)]
#[command(name = "lumen-traffic", version)]
struct Flags {
    /// Ingest base URL.
    #[arg(
        long,
        env = "LUMEN_TRAFFIC_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    ingest_url: String,
    /// Site id of the events.
    #[arg(long, env = "LUMEN_TRAFFIC_SITE_ID", default_value = "demo")]
    site_id: String,
    /// Origin of the site's pages.
    #[arg(
        long,
        env = "LUMEN_TRAFFIC_SITE_ORIGIN",
        default_value = "http://localhost:8000"
    )]
    site_origin: String,
    /// Readers per second.
    #[arg(long, env = "LUMEN_TRAFFIC_RATE", default_value_t = 50.0)]
    rate: f64,
    /// Seconds of traffic.
    #[arg(long, env = "LUMEN_TRAFFIC_DURATION_SECS", default_value_t = 60)]
    duration_secs: u64,
    /// Stop after this many readers.
    #[arg(long, env = "LUMEN_TRAFFIC_READERS")]
    readers: Option<u64>,
    /// Seed: the same seed sends the same readers.
    #[arg(long, env = "LUMEN_TRAFFIC_SEED", default_value_t = 1)]
    seed: u64,
    /// Requests in flight at most.
    #[arg(long, env = "LUMEN_TRAFFIC_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Write the ground truth as JSON to this file.
    #[arg(long, env = "LUMEN_TRAFFIC_TRUTH_FILE")]
    truth_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = TrafficConfig {
        ingest_url: flags.ingest_url,
        population: Population {
            site_id: flags.site_id,
            site_origin: flags.site_origin,
            ..Population::default()
        },
        readers_per_second: flags.rate,
        duration: Duration::from_secs(flags.duration_secs),
        max_readers: flags.readers,
        concurrency: flags.concurrency,
        seed: flags.seed,
        ..TrafficConfig::default()
    };
    eprintln!(
        "lumen-traffic: {} readers/s for {} s to {} (seed {})",
        config.readers_per_second,
        config.duration.as_secs(),
        config.ingest_url,
        config.seed
    );
    let report = drive(config, |p| {
        if p.elapsed.as_secs() % 5 == 0 {
            eprintln!(
                "  {:>3} s: {} readers, {} events, {} retries",
                p.elapsed.as_secs(),
                p.readers,
                p.events,
                p.retries
            );
        }
    })
    .await;
    println!(
        "ground truth after {} readers ({} retries):",
        report.readers, report.retries
    );
    print!("{}", report.truth.render());
    if let Some(path) = flags.truth_file {
        std::fs::write(&path, serde_json::to_vec_pretty(&report.truth)?)?;
    }
    if !report.failures.is_empty() {
        anyhow::bail!(
            "{} beacons not delivered, first: {}",
            report.failures.len(),
            report.failures[0]
        );
    }
    Ok(())
}
