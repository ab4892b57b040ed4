//! Runs a [`Simulation`] against ingest at a steady rate: readers are
//! generated on a clock, each reader's beacons are sent in order (the share
//! after the pageview, as in a browser), many readers at once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::send::{SendError, Sender};
use crate::simulate::{Population, Simulation};
use crate::truth::Truth;

/// How much traffic to send, and where.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Ingest base URL.
    pub ingest_url: String,
    /// Who the readers are.
    pub population: Population,
    /// Readers per second.
    pub readers_per_second: f64,
    /// Stop generating after this long...
    pub duration: Duration,
    /// ...or after this many readers, whichever comes first.
    pub max_readers: Option<u64>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Seed of the population.
    pub seed: u64,
    /// How long one beacon may be retried before it counts as lost.
    pub retry_budget: Duration,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            ingest_url: "http://127.0.0.1:8080".to_owned(),
            population: Population::default(),
            readers_per_second: 50.0,
            duration: Duration::from_secs(60),
            max_readers: None,
            concurrency: 64,
            seed: 1,
            retry_budget: Duration::from_secs(180),
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct Report {
    /// Expected counts of everything generated.
    pub truth: Truth,
    /// Readers generated.
    pub readers: u64,
    /// Requests retried.
    pub retries: u64,
    /// Beacons that could not be delivered (should be empty).
    pub failures: Vec<String>,
    /// Wall time from first to last answer.
    pub elapsed: Duration,
}

/// A progress callback's view, once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Readers generated so far.
    pub readers: u64,
    /// Events generated so far.
    pub events: u64,
    /// Requests retried so far.
    pub retries: u64,
    /// Time since start.
    pub elapsed: Duration,
}

/// Generates and delivers the traffic; returns when every beacon has been
/// answered or given up on.
pub async fn drive(config: TrafficConfig, mut on_progress: impl FnMut(Progress)) -> Report {
    let sender = Sender::new(
        &config.ingest_url,
        &config.population.site_origin,
        config.retry_budget,
    );
    let mut simulation = Simulation::new(config.population.clone(), config.seed);
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut in_flight: JoinSet<Result<(), SendError>> = JoinSet::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut readers = 0u64;
    let mut last_progress = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(10));

    while started.elapsed() < config.duration && config.max_readers.is_none_or(|max| readers < max)
    {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * config.readers_per_second) as u64;
        let due = config.max_readers.map_or(due, |max| due.min(max));
        while readers < due {
            readers += 1;
            let beacons = simulation.next_reader(now_ms());
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let sender = sender.clone();
            in_flight.spawn(async move {
                let _permit = permit;
                for beacon in &beacons {
                    sender.send(beacon).await?;
                }
                Ok(())
            });
        }
        while let Some(done) = in_flight.try_join_next() {
            record(done, &mut failures);
        }
        if started.elapsed() - last_progress >= Duration::from_secs(1) {
            last_progress = started.elapsed();
            on_progress(Progress {
                readers,
                events: simulation.truth().events,
                retries: sender.retries(),
                elapsed: last_progress,
            });
        }
    }
    while let Some(done) = in_flight.join_next().await {
        record(done, &mut failures);
    }
    Report {
        truth: simulation.truth().clone(),
        readers,
        retries: sender.retries(),
        failures,
        elapsed: started.elapsed(),
    }
}

fn record(done: Result<Result<(), SendError>, tokio::task::JoinError>, failures: &mut Vec<String>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(error)) => failures.push(error.to_string()),
        Err(error) => failures.push(error.to_string()),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
