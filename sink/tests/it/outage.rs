//! ClickHouse unreachable for 30 s under traffic (through a proxy the test
//! controls; the shared server keeps running): the sink backs off, keeps its
//! batches, pauses reading, and when ClickHouse is back drains the backlog
//! with nothing lost or doubled.

use std::time::Duration;

use crate::harness::{Harness, InProcessSink, clickhouse_url, events, eventually, free_port, get};
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seconds_without_clickhouse_lose_and_double_nothing() {
    let harness = Harness::new("outage").await;
    let target = clickhouse_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start(target).await;
    let mut config = harness.config();
    config.clickhouse.url = proxy.url();
    config.batch.insert_timeout_ms = 2_000;
    let port = free_port();
    config.admin.addr = Some(([127, 0, 0, 1], port).into());
    let sink = InProcessSink::start(config);

    harness.produce(&events(0, 1_000)).await;
    harness.expect_exactly(1_000).await;

    proxy.set_up(false);
    let mut sent = 1_000;
    let outage = tokio::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        harness.produce(&events(sent, 500)).await;
        sent += 500;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(
        harness.count("events").await,
        1_000,
        "nothing can land while ClickHouse is away"
    );
    let readyz = get(port, "/readyz").await.expect("readyz");
    assert!(
        readyz.starts_with("HTTP/1.1 503"),
        "not ready while inserts fail: {readyz}"
    );
    let metrics = get(port, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("lumen_sink_retries_total{reason=\"network\"}"),
        "{metrics}"
    );
    proxy.set_up(true);

    harness.expect_exactly(sent).await;
    eventually("ready again", || async {
        get(port, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    sink.stop().await;
}
