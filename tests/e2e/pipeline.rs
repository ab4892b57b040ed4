//! The pipeline under steady traffic: exact counts per channel, resolved
//! sharers, latency from beacon to query, metrics in a real Prometheus,
//! and a clean SIGTERM.

use std::time::Duration;

use lumen_e2e::{TrafficConfig, drive};

use crate::counts::{assert_matches_truth, assert_share_visits_resolved, wait_for_rows};
use crate::harness::Pipeline;
use crate::observe::{Prometheus, latency_probes, quantile};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ground_truth_equals_clickhouse_per_channel() {
    let _turn = crate::one_at_a_time().await;
    let mut pipeline = Pipeline::start("truth").await;
    let prometheus = Prometheus::start(
        &pipeline.name,
        &[
            ("ingest", pipeline.ingest.admin_port),
            ("enrich", pipeline.enrich.admin_port),
            ("sink", pipeline.sink.admin_port),
        ],
    )
    .await;
    let clickhouse = pipeline.clickhouse();

    let traffic = tokio::spawn(drive(
        TrafficConfig {
            ingest_url: pipeline.ingest_url.clone(),
            readers_per_second: 60.0,
            duration: Duration::from_secs(25),
            max_readers: Some(1_500),
            seed: 42,
            ..TrafficConfig::default()
        },
        |_| {},
    ));
    let (latencies, probe_truth) = latency_probes(
        &pipeline.ingest_url,
        &clickhouse,
        60,
        Duration::from_millis(200),
    )
    .await;
    let report = traffic.await.expect("traffic task");
    assert!(
        report.failures.is_empty(),
        "undelivered: {:?}",
        &report.failures[..1]
    );
    let mut truth = report.truth;
    truth.merge(&probe_truth);

    wait_for_rows(&clickhouse, truth.events, Duration::from_secs(120)).await;
    assert_matches_truth(&clickhouse, &truth, Duration::from_secs(30)).await;
    assert_share_visits_resolved(&clickhouse, &truth).await;
    println!(
        "beacon-to-queryable latency over {} probes under {:.0} readers/s: p50 {:?}, p99 {:?}\n{}",
        latencies.len(),
        report.readers as f64 / report.elapsed.as_secs_f64(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        truth.render()
    );

    for (series, at_least) in [
        ("lumen_ingest_events_total", truth.events as f64),
        ("lumen_sink_rows_written_total", truth.events as f64),
    ] {
        crate::harness::eventually(
            &format!("Prometheus to scrape {series} >= {at_least}"),
            Duration::from_secs(30),
            || async {
                prometheus
                    .value(&format!("sum({series})"))
                    .await
                    .filter(|v| *v >= at_least)
            },
        )
        .await;
    }
    for series in [
        "lumen_enrich_events_out_total",
        "lumen_sink_insert_duration_seconds_count",
    ] {
        let value = prometheus.value(&format!("sum({series})")).await;
        assert!(value.is_some_and(|v| v > 0.0), "{series} = {value:?}");
    }

    assert_eq!(
        pipeline.ingest.terminate(),
        Some(0),
        "ingest exits 0 on SIGTERM"
    );
    assert_eq!(
        pipeline.enrich.terminate(),
        Some(0),
        "enrich exits 0 on SIGTERM"
    );
    assert_eq!(
        pipeline.sink.terminate(),
        Some(0),
        "sink exits 0 on SIGTERM"
    );
    pipeline.teardown().await;
}
