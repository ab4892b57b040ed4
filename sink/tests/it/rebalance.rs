//! Rebalances under load. Revoked partitions are discarded and rewound; the
//! next owner replays them under the same deduplication tokens, so nothing
//! is lost or doubled, and a partition paused by flow control before a
//! rebalance is read again after it.

use std::sync::Arc;
use std::time::Duration;

use lumen_runtime::Shutdown;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::harness::{GatedSink, Harness, brokers, events, eventually, get, metric};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_joining_and_leaving_under_traffic_keep_counts_exact() {
    let harness = Harness::new("rebalance").await;
    let first_shutdown = Shutdown::new();
    let first = tokio::spawn(lumen_sink::run(harness.config(), first_shutdown.clone()));
    let mut sent = 0;
    let mut wave = async |n: u64| {
        harness.produce(&events(sent, n)).await;
        sent += n;
    };
    wave(1_000).await;

    let second_shutdown = Shutdown::new();
    let second = tokio::spawn(lumen_sink::run(harness.config(), second_shutdown.clone()));
    for _ in 0..5 {
        wave(400).await;
    }
    first_shutdown.trigger();
    for _ in 0..5 {
        wave(400).await;
    }
    first
        .await
        .expect("join")
        .expect("first sink stops cleanly");
    harness.expect_exactly(5_000).await;
    second_shutdown.trigger();
    second
        .await
        .expect("join")
        .expect("second sink stops cleanly");
}

/// librdkafka keeps an application pause across a rebalance: a sink that
/// paused its partitions (its read-ahead budget held by inserts ClickHouse
/// does not answer) and then got them back would never read them again
/// unless it resumes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_paused_before_a_rebalance_are_read_after_it() {
    let harness = Harness::new("paused_rebalance").await;
    let total = 3_000;
    harness.produce(&events(0, total)).await;

    let mut config = harness.config();
    config.batch.max_rows = 100;
    config.batch.max_buffered_rows = 250;
    let sink = GatedSink::start(config);
    let port = sink.port;
    eventually(
        "every partition paused behind the blocked inserts",
        || async {
            get(port, "/metrics")
                .await
                .is_some_and(|m| metric(&m, "lumen_sink_paused_partitions") == Some(3.0))
        },
    )
    .await;

    // Another member joins the group (every partition is revoked and
    // reassigned), then leaves (again), while the sink is paused.
    let joiner = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", harness.group())
            .set("session.timeout.ms", "6000")
            // It must leave no offsets behind: it reads nothing it writes.
            .set("enable.auto.commit", "false")
            .create::<BaseConsumer>()
            .expect("joining consumer"),
    );
    joiner
        .subscribe(&[harness.enriched.as_str()])
        .expect("subscribe");
    let polling = Arc::clone(&joiner);
    tokio::task::spawn_blocking(move || {
        while polling.assignment().map_or(0, |a| a.count()) == 0 {
            let _ = polling.poll(Duration::from_millis(100));
        }
    })
    .await
    .expect("joiner assigned");
    drop(joiner);

    sink.open();
    harness.expect_exactly(total).await;
    sink.stop().await;
}
