//! The normal path: N events in, exactly N rows out, every field typed as
//! the model says, every aggregate exact, a clean shutdown, and memory held
//! within `--max-buffered-rows` and `--max-buffered-bytes` while ClickHouse
//! is slower than Kafka.

use std::collections::HashMap;
use std::time::Duration;

use lumen_runtime::Shutdown;
use lumen_sink::Config;
use lumen_sink::decode::{Consumed, Decoder, Records};
use lumen_sink::insert::{ClickHouseTable, Table};
use lumen_sink::row::{EVENTS_TABLE, EventRow, Record};
use uuid::Uuid;

use crate::harness::{
    GatedSink, Harness, InProcessSink, events, eventually, free_port, get, metric,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_events_in_exactly_n_rows_and_exact_aggregates() {
    let harness = Harness::new("flow").await;
    let sink = InProcessSink::start(harness.config());
    let sent = events(0, 3_000);
    harness.produce(&sent).await;
    harness.expect_exactly(3_000).await;

    // Every enriched field arrives with its meaning: enums by symbol,
    // absent strings as '', times to the millisecond.
    let probe = &sent[3];
    let json = serde_json::to_value(probe).expect("json");
    let row = harness
        .tsv(&format!(
            "SELECT toString(kind), toString(channel), toString(attribution), toString(device_type), \
             toString(token_status), toString(share_method), toUnixTimestamp64Milli(received_at), referrer, channel_source \
             FROM {}.events WHERE event_id = '{}'",
            harness.database, probe.event_id
        ))
        .await;
    let expected = format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        json["kind"].as_str().expect("kind"),
        json["channel"].as_str().expect("channel"),
        json["attribution"].as_str().expect("attribution"),
        json["device_type"].as_str().expect("device"),
        json["token_status"].as_str().expect("status"),
        json["share_method"].as_str().unwrap_or("\\N"),
        probe.received_at,
        probe.referrer.as_deref().unwrap_or(""),
        probe.channel_source.as_deref().unwrap_or(""),
    );
    assert_eq!(row, expected);

    // More traffic after the first batches: still exact.
    harness.produce(&events(3_000, 1_000)).await;
    harness.expect_exactly(4_000).await;

    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_subcommand_applies_the_model_and_exits() {
    let harness = Harness::new("migrate").await;
    let mut config = harness.config();
    config.command = Some(lumen_sink::Command::Migrate);
    lumen_sink::run(config.clone(), Shutdown::new())
        .await
        .expect("migrate");
    assert_eq!(harness.count("events").await, 0);
    let ttl = harness
        .tsv(&format!(
            "SELECT engine_full LIKE '%TTL toDateTime(received_at) + toIntervalDay(395)%' FROM system.tables \
             WHERE database = '{}' AND name = 'events'",
            harness.database
        ))
        .await;
    assert_eq!(ttl.trim(), "1", "the default retention is applied");
    lumen_sink::run(config, Shutdown::new())
        .await
        .expect("migrate again is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_pauses_at_the_buffered_rows_budget() {
    let harness = Harness::new("budget").await;
    let mut config = harness.config();
    config.batch.max_rows = 100;
    config.batch.max_buffered_rows = 250;
    // The budget is checked between records: one more per partition at most.
    pauses_at_the_budget(&harness, config, "lumen_sink_buffered_rows", 250.0, 3.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_pauses_at_the_buffered_bytes_budget_whatever_the_rows() {
    let harness = Harness::new("byte_budget").await;
    let largest = events(0, TOTAL)
        .iter()
        .map(|event| harness.codec.encode(event).expect("encode").len())
        .max()
        .expect("events");
    let mut config = harness.config();
    config.batch.max_rows = 100;
    config.batch.max_buffered_rows = 100_000;
    config.batch.max_buffered_bytes = 60_000;
    let slack = 3.0 * largest as f64;
    pauses_at_the_budget(
        &harness,
        config,
        "lumen_sink_buffered_bytes",
        60_000.0,
        slack,
    )
    .await;
}

/// A backlog read to its end is inserted at once: each partition's last,
/// partial batch does not wait out `--batch-max-age-ms` (ten minutes here,
/// far past the test's deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_backlog_is_inserted_without_waiting_for_its_age() {
    let harness = Harness::new("backlog_end").await;
    harness.produce(&events(0, 1_000)).await;
    let mut config = harness.config();
    config.batch.max_rows = 100;
    config.batch.max_age_ms = 600_000;
    let sink = InProcessSink::start(config);
    harness.expect_exactly(1_000).await;
    sink.stop().await;
}

/// Read to its end a few records at a time, as at a steady rate, a
/// partition's batch still fills until its age: three bursts, each read to
/// the end before the next is sent, make one insert per partition, not one
/// per burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_read_to_its_end_still_fills_batches_until_their_age() {
    let harness = Harness::new("trickle").await;
    let mut config = harness.config();
    config.batch.max_rows = 1_000;
    config.batch.max_age_ms = 10_000;
    let port = free_port();
    config.admin.addr = Some(([127, 0, 0, 1], port).into());
    let sink = InProcessSink::start(config);
    let exposition = || async { get(port, "/metrics").await.unwrap_or_default() };
    for burst in 0..3 {
        harness.produce(&events(burst * 30, 30)).await;
        let read = (burst + 1) * 30;
        eventually("the burst read", || async {
            metric(&exposition().await, "lumen_sink_records_consumed_total") == Some(read as f64)
        })
        .await;
    }
    harness.expect_exactly(90).await;
    assert_eq!(
        metric(
            &exposition().await,
            "lumen_sink_insert_duration_seconds_count"
        ),
        Some(3.0),
        "one insert per partition"
    );
    sink.stop().await;
}

/// Events preloaded for the budget tests: many more than either budget.
const TOTAL: u64 = 3_000;

/// Starts a sink with `config` against ClickHouse held shut over [`TOTAL`]
/// waiting events: every partition pauses with `gauge` at `budget`, up to
/// `slack` over it, and stays there; opened, every event lands.
async fn pauses_at_the_budget(
    harness: &Harness,
    config: Config,
    gauge: &str,
    budget: f64,
    slack: f64,
) {
    harness.produce(&events(0, TOTAL)).await;
    let sink = GatedSink::start(config);
    let port = sink.port;
    let exposition = || async { get(port, "/metrics").await.unwrap_or_default() };
    eventually("every partition paused at the budget", || async {
        metric(&exposition().await, "lumen_sink_paused_partitions") == Some(3.0)
    })
    .await;
    // Held there: a second look, after reading had every chance to go on.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let metrics = exposition().await;
    let held = metric(&metrics, gauge).expect("gauge");
    assert!(
        (budget..=budget + slack).contains(&held),
        "{gauge} {held} with a budget of {budget}"
    );
    assert_eq!(metric(&metrics, "lumen_sink_paused_partitions"), Some(3.0));

    sink.open();
    harness.expect_exactly(TOTAL).await;
    eventually("nothing held once every batch is acknowledged", || async {
        metric(&exposition().await, gauge) == Some(0.0)
    })
    .await;
    sink.stop().await;
}

/// The sink writes plain RowBinary, unvalidated: its row type must match the
/// migrated `events` column for column, name and type, which the client's
/// own validation checks here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_type_matches_the_events_table() {
    let harness = Harness::new("row_type").await;
    let config = harness.config();
    lumen_sink::migrate(&config).await.expect("migrate");
    let record = Record::new(events(0, 1).remove(0)).expect("record");
    let mut insert = config
        .clickhouse
        .client()
        .with_validation(true)
        .insert::<EventRow<'_>>(EVENTS_TABLE)
        .await
        .expect("insert");
    insert
        .write(&record.row())
        .await
        .expect("the row type matches the table");
    insert.end().await.expect("the row is accepted");
    assert_eq!(harness.count("events").await, 1);
}

/// The sink writes rows transcoded from the Avro bytes; read back through
/// the client's validated, typed row, each equals the row the model's
/// conventions make of its event (`Record::row`, the reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoded_rows_read_back_as_the_rows_of_their_events() {
    let harness = Harness::new("transcode").await;
    let config = harness.config();
    lumen_sink::migrate(&config).await.expect("migrate");
    let mut sent = events(0, 60);
    // Every optional field present at least once.
    let full = &mut sent[7];
    for field in [
        &mut full.webview,
        &mut full.parent_token,
        &mut full.utm_source,
        &mut full.utm_medium,
        &mut full.utm_campaign,
        &mut full.landing_share_target,
        &mut full.landing_sharer_visitor_id,
        &mut full.landing_parent_token,
    ] {
        *field = Some("é ünïcode and a long value ".repeat(10));
    }
    let payloads: Vec<Vec<u8>> = sent
        .iter()
        .map(|event| harness.codec.encode(event).expect("encode"))
        .collect();
    let records: Records = payloads
        .iter()
        .zip(0..)
        .map(|(payload, offset)| Consumed {
            offset,
            key: None,
            payload,
        })
        .collect();
    let decoder = Decoder::new().expect("decoder");
    let mut rows = decoder.rows(&records, 0..records.len());
    ClickHouseTable::new(config.clickhouse.client(), Duration::from_secs(10))
        .insert(&mut rows, "transcode-test")
        .await
        .expect("insert");
    assert!(rows.into_undecodable().is_empty());

    let expected: HashMap<Uuid, Record> = sent
        .into_iter()
        .map(|event| {
            let record = Record::new(event).expect("record");
            (record.event_id, record)
        })
        .collect();
    let mut cursor = harness
        .clickhouse()
        .with_validation(true)
        .query("SELECT ?fields FROM events")
        .fetch::<EventRow<'_>>()
        .expect("query");
    let mut read = 0;
    while let Some(row) = cursor.next().await.expect("typed row") {
        assert_eq!(row, expected[&row.event_id].row());
        read += 1;
    }
    assert_eq!(read, expected.len());
}
