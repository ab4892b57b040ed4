//! Crashes between "ClickHouse acknowledged the insert" and "the offset is
//! committed": the replay must hit the same deduplication tokens, so counts
//! and aggregates stay exact. Once in-process at exactly that point (with
//! different batch bounds after the restart, so only the recorded intent
//! can reproduce the cut), once with a real SIGKILL of the binary.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lumen_sink::decode::Rows;
use lumen_sink::insert::{ClickHouseTable, InsertError, Table};
use tokio::sync::Notify;

use crate::harness::{Harness, InProcessSink, events, eventually, free_port, get};

/// The real table, which after its `n`-th acknowledged insert signals the
/// test and never returns, so the offset is never committed.
struct CrashAfterInsert {
    inner: ClickHouseTable,
    remaining: AtomicUsize,
    crashed: Arc<Notify>,
}

impl Table for CrashAfterInsert {
    async fn insert(&self, rows: &mut Rows<'_>, token: &str) -> Result<(), InsertError> {
        self.inner.insert(rows, token).await?;
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// Runs a sink with `config` through a [`CrashAfterInsert`] table until its
/// `inserts`-th acknowledged insert, then kills it in-process there; returns
/// the rows that landed.
async fn crash_after(harness: &Harness, config: lumen_sink::Config, inserts: usize) -> u64 {
    let crashed = Arc::new(Notify::new());
    let table_crashed = crashed.clone();
    let sink = InProcessSink::start_with(config, move |client, timeout| CrashAfterInsert {
        inner: ClickHouseTable::new(client, timeout),
        remaining: AtomicUsize::new(inserts),
        crashed: table_crashed,
    });
    crashed.notified().await;
    sink.kill().await;
    harness.count("events").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_insert_before_commit_replays_without_duplicates() {
    let harness = Harness::new("crash_inprocess").await;
    harness.produce(&events(0, 2_000)).await;

    // First life: time-cut batches (the age bound fires long before 5 000
    // rows), crash after the third acknowledged insert.
    let mut config = harness.config();
    config.batch.max_rows = 5_000;
    config.batch.max_age_ms = 5;
    let landed = crash_after(&harness, config, 3).await;
    assert!(landed > 0, "the crash came after an acknowledged insert");

    // Second life with other bounds: only the intent reproduces the cut.
    let mut config = harness.config();
    config.batch.max_rows = 70;
    let second = InProcessSink::start(config);
    harness.expect_exactly(2_000).await;
    second.stop().await;
}

/// A replayed batch is read to the end its intent says even when it alone
/// is more than the read-ahead budget (both bounds lowered after the
/// crash): the budget stops reading only while a delivery is under way to
/// free it, and a replay cannot be cut early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_larger_than_the_read_ahead_budget_is_still_read_whole() {
    let harness = Harness::new("crash_replay_budget").await;
    harness.produce(&events(0, 600)).await;

    // First life: batches of 100, crash after the first acknowledged insert.
    let mut config = harness.config();
    config.batch.max_rows = 100;
    let landed = crash_after(&harness, config, 1).await;
    assert!(landed >= 100, "a batch of 100 landed before the crash");

    // Second life: a budget of 50 records, half the replayed batch.
    let mut config = harness.config();
    config.batch.max_rows = 50;
    config.batch.max_buffered_rows = 50;
    let second = InProcessSink::start(config);
    harness.expect_exactly(600).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_binary_mid_stream_loses_and_doubles_nothing() {
    let harness = Harness::new("crash_sigkill").await;
    let port = free_port();
    let mut sink = harness.spawn_sink(port);

    // Traffic in waves while the sink writes; kill it once some rows landed.
    let total = 6_000;
    let mut sent = 0;
    while sent < total / 2 {
        harness.produce(&events(sent, 500)).await;
        sent += 500;
    }
    eventually("first rows", || async { harness.count("events").await > 0 }).await;
    sink.kill().expect("SIGKILL");
    sink.wait().expect("reaped");
    while sent < total {
        harness.produce(&events(sent, 500)).await;
        sent += 500;
    }
    assert!(
        harness.count("events").await < total,
        "killed before the end"
    );

    let port = free_port();
    let mut sink = harness.spawn_sink(port);
    harness.expect_exactly(total).await;
    eventually("ready", || async {
        get(port, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    let metrics = get(port, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("lumen_sink_rows_written_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lumen_sink_seconds_since_last_insert"),
        "{metrics}"
    );

    // SIGTERM: flush, commit, exit 0.
    let term = Command::new("kill")
        .args(["-TERM", &sink.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = sink.wait().expect("reaped");
    assert!(status.success(), "exit status {status}");
}
