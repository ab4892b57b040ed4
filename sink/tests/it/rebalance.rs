//! Two sinks in one consumer group under traffic: one joins (rebalance),
//! then the first leaves (rebalance again). Revoked partitions are
//! discarded and rewound; the new owner replays them under the same
//! deduplication tokens, so nothing is lost or doubled.

use lumen_runtime::Shutdown;

use crate::harness::{Harness, events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flaky (about 1 run in 5): a partition's committed offset sometimes stays behind its end after the second rebalance; rows are exact, the cause is open"]
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
