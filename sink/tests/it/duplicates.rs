//! An event that is twice in `lumen.enriched` is written once. Kafka put
//! such a copy there after a 60 s freeze (a transaction aborted without its
//! marker reaching the partition stays readable under read_committed, and
//! the transaction that processed the same input again adds it a second
//! time), so both copies share their key, hence their partition: within one
//! run of the sink, and with the sink killed between the two copies.

use crate::harness::{Harness, events, eventually, free_port, get, metric};

/// Runs the sink binary until `rows` rows are in ClickHouse, exactly, and
/// checks it passed over `copies` records; then SIGKILLs it.
async fn sink_writes_exactly(harness: &Harness, rows: u64, copies: f64) {
    let port = free_port();
    let mut sink = harness.spawn_sink(port);
    harness.expect_exactly(rows).await;
    assert_eq!(duplicates_dropped(port).await, copies);
    sink.kill().expect("SIGKILL");
    sink.wait().expect("reaped");
}

/// `lumen_sink_duplicates_dropped_total` of the sink on `port`, once it
/// serves its metrics.
async fn duplicates_dropped(port: u16) -> f64 {
    let dropped = || async {
        let exposition = get(port, "/metrics").await.unwrap_or_default();
        metric(&exposition, "lumen_sink_duplicates_dropped_total")
    };
    eventually("metrics served", || async { dropped().await.is_some() }).await;
    dropped().await.expect("duplicates metric")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_the_topic_twice_is_written_once_even_across_a_crash() {
    let harness = Harness::new("duplicates").await;
    let sent = events(0, 1_000);
    // Copies right behind their originals, as a retried transaction's.
    let mut first_wave = sent.clone();
    first_wave.extend_from_slice(&sent[200..300]);
    harness.produce(&first_wave).await;
    sink_writes_exactly(&harness, 1_000, 100.0).await;

    // Copies of events written before the crash, after the committed
    // offsets: only the ids read back from the partitions' tails catch them.
    let mut second_wave = sent[900..].to_vec();
    second_wave.extend(events(1_000, 500));
    harness.produce(&second_wave).await;
    sink_writes_exactly(&harness, 1_500, 100.0).await;
}
