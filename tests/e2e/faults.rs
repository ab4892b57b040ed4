//! Exact counts under faults: SIGKILL of each service at random moments
//! under load, a Kafka restart, ClickHouse stopped for 30 s, and all of them
//! in one run. The generator retries what ingest did not acknowledge, as the
//! tracker does; nothing else may be lost or doubled.

use std::process::Command;
use std::time::{Duration, Instant};

use lumen_e2e::{TrafficConfig, drive};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::counts::{assert_matches_truth, wait_for_rows};
use crate::harness::{Pipeline, workspace_root};

/// Something that goes wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillIngest,
    KillEnrich,
    KillSink,
    RestartKafka,
    /// The broker stopped (SIGSTOP) and continued: connections stay open
    /// and nothing is answered, as in a long GC pause or a stalled VM.
    FreezeKafka(Duration),
    ClickHouseOutage(Duration),
}

fn local(script: &str, action: &str) {
    let status = Command::new(workspace_root().join("deploy/local").join(script))
        .arg(action)
        .status()
        .unwrap_or_else(|e| panic!("{script} {action}: {e}"));
    assert!(status.success(), "{script} {action} failed: {status}");
}

fn kafka_pid() -> String {
    let output = Command::new(workspace_root().join("deploy/local/kafka.sh"))
        .arg("pid")
        .output()
        .expect("kafka.sh pid");
    let pid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!pid.is_empty(), "Kafka is not running");
    pid
}

fn signal(pid: &str, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

async fn inject(pipeline: &mut Pipeline, fault: Fault, rng: &mut StdRng) {
    let pause = Duration::from_millis(rng.random_range(300..2_000));
    let service = match fault {
        Fault::KillIngest => &mut pipeline.ingest,
        Fault::KillEnrich => &mut pipeline.enrich,
        Fault::KillSink => &mut pipeline.sink,
        Fault::RestartKafka => {
            tokio::task::spawn_blocking(|| local("kafka.sh", "restart"))
                .await
                .expect("kafka restart");
            return;
        }
        Fault::FreezeKafka(freeze) => {
            let pid = tokio::task::spawn_blocking(kafka_pid)
                .await
                .expect("kafka pid");
            signal(&pid, "STOP");
            tokio::time::sleep(freeze).await;
            signal(&pid, "CONT");
            return;
        }
        Fault::ClickHouseOutage(outage) => {
            tokio::task::spawn_blocking(|| local("clickhouse.sh", "stop"))
                .await
                .expect("clickhouse stop");
            tokio::time::sleep(outage).await;
            tokio::task::spawn_blocking(|| local("clickhouse.sh", "start"))
                .await
                .expect("clickhouse start");
            return;
        }
    };
    service.kill();
    tokio::time::sleep(pause).await;
    service.start().await;
}

/// Runs traffic for `seconds`, injecting each fault at a random moment of
/// its window (seconds from the start), then checks the counts are exact.
async fn survive(test: &str, seconds: u64, schedule: &[(Fault, u64, u64)]) {
    let _turn = crate::one_at_a_time().await;
    let seed = std::env::var("LUMEN_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{test}: fault seed {seed} (LUMEN_E2E_SEED={seed} replays the same moments)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pipeline = Pipeline::start(test).await;
    let clickhouse = pipeline.clickhouse();

    let traffic = tokio::spawn(drive(
        TrafficConfig {
            ingest_url: pipeline.ingest_url.clone(),
            readers_per_second: 30.0,
            duration: Duration::from_secs(seconds),
            seed,
            retry_budget: Duration::from_secs(240),
            ..TrafficConfig::default()
        },
        |_| {},
    ));
    let started = Instant::now();
    for &(fault, from, to) in schedule {
        let at = Duration::from_secs(rng.random_range(from..=to));
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        println!("{test}: {fault:?} at {:?}", started.elapsed());
        inject(&mut pipeline, fault, &mut rng).await;
    }
    let report = traffic.await.expect("traffic task");
    assert!(
        report.failures.is_empty(),
        "undelivered: {:?}",
        &report.failures[..1]
    );
    println!(
        "{test}: {} readers, {} events, {} retried requests",
        report.readers, report.truth.events, report.retries
    );
    wait_for_rows(&clickhouse, report.truth.events, Duration::from_secs(180)).await;
    assert_matches_truth(&clickhouse, &report.truth, Duration::from_secs(60)).await;
    pipeline.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_each_service_under_load_loses_and_doubles_nothing() {
    survive(
        "kills",
        30,
        &[
            (Fault::KillIngest, 3, 8),
            (Fault::KillEnrich, 10, 15),
            (Fault::KillSink, 17, 22),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_restart_loses_and_doubles_nothing() {
    survive("kafka_restart", 25, &[(Fault::RestartKafka, 6, 10)]).await;
}

/// A broker that answers nothing for longer than the session timeout: the
/// group loses every member; enrich's transactional calls outlast their
/// bound, so its producer is replaced, and an intent commit caught by the
/// freeze outlasts the sink's rebalance wait, so its consumer is replaced.
/// Clients created or reconnecting as the broker comes back can be left
/// with no broker at all (librdkafka #5301, #5511): ingest's producer, a
/// consumer stuck without coordinator, in `wait-metadata`, or with a
/// partition that never fetches, are replaced after 45 s; enrich resumes a
/// commit that timed out instead of aborting it. Once in ~20 runs Kafka
/// left an aborted transaction's record readable in `lumen.enriched` (its
/// abort marker lost as the broker's transaction coordinator reloaded), next
/// to the retried transaction's copy: the sink writes an event id once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_frozen_for_60s_loses_and_doubles_nothing() {
    survive(
        "kafka_freeze",
        25,
        &[(Fault::FreezeKafka(Duration::from_secs(60)), 5, 8)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clickhouse_stopped_for_30s_loses_and_doubles_nothing() {
    survive(
        "clickhouse_outage",
        45,
        &[(Fault::ClickHouseOutage(Duration::from_secs(30)), 4, 6)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_faults_in_one_run_lose_and_double_nothing() {
    survive(
        "all_faults",
        80,
        &[
            (Fault::KillIngest, 3, 6),
            (Fault::KillEnrich, 8, 11),
            (Fault::KillSink, 13, 16),
            (Fault::RestartKafka, 19, 22),
            (Fault::ClickHouseOutage(Duration::from_secs(30)), 26, 28),
            (Fault::KillEnrich, 62, 66),
            (Fault::KillSink, 68, 72),
        ],
    )
    .await;
}
