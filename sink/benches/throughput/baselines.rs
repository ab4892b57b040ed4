//! The two baselines of the sink's throughput, both fed the rows that (a)
//! landed, into a table migrated like (a)'s.
//!
//! - ClickHouse's ingest limit over HTTP: RowBinary encoded by ClickHouse
//!   and LZ4-compressed by the `clickhouse` crate before the clock starts.
//!   Run three times: bare (b); (b') with the sink's deduplication settings
//!   and a token per batch, which tells ClickHouse's price of exactly-once
//!   inserts (b over b') from the sink's own costs (b' over a); and (b'')
//!   as (b') with each lane's inserts spread over (a)'s duration. ClickHouse
//!   merges parts in the background while inserts arrive, and a short run
//!   ends before most of those merges (the database is dropped after it),
//!   so its CPU per row grows with the run's length: (b'') is what
//!   ClickHouse spends on the same inserts over as long as (a) took, the
//!   fair yardstick for ClickHouse's CPU in (a).
//! - ClickHouse's Kafka table engine. It cannot read the enriched topic
//!   (Avro single-object encoding: a `C3 01` header and a fingerprint per
//!   message), so it reads a mirror topic holding the same rows as
//!   **RowBinary, one row per message**: the cheapest format ClickHouse
//!   parses (no text, no schema per message), with one message per row like
//!   the enriched topic, so the engine pays the same per-message Kafka costs
//!   as the sink and nothing more. JSONEachRow would add text parsing, Avro
//!   OCF or Protobuf a schema or length header per message: both would only
//!   slow the engine down. The mirror is written by ClickHouse itself (a
//!   Kafka engine table used as a producer), so its bytes are exactly what
//!   the engine expects. The engine gets the sink's batch bounds:
//!   `kafka_max_block_size` = `--batch-max-rows`, `kafka_flush_interval_ms`
//!   = `--batch-max-age-ms` (its defaults, about a million rows or 7.5 s,
//!   would make it wait, not work).

use std::time::{Duration, Instant};

use clickhouse::insert_formatted::CompressedData;
use clickhouse::sql::Identifier;
use clickhouse::{Client, Compression};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::task::JoinSet;

use crate::cpu::Servers;
use crate::harness::{Harness, PARTITIONS, brokers, clickhouse_url, eventually};
use crate::{Settings, Throughput, drop_database, phase, watch};

/// How (b) sends its batches.
#[derive(Clone, Copy)]
pub enum Pace {
    /// (b): back to back, no deduplication.
    Bare,
    /// (b'): back to back, with the sink's deduplication settings.
    Deduplicated,
    /// (b''): with the sink's deduplication settings, the `k`-th insert of a
    /// lane starting no earlier than `k / inserts` of the duration.
    DeduplicatedOver(Duration),
}

impl Pace {
    fn deduplicated(self) -> bool {
        !matches!(self, Self::Bare)
    }

    fn phase(self) -> &'static str {
        match self {
            Self::Bare => "http",
            Self::Deduplicated => "http_dedup",
            Self::DeduplicatedOver(_) => "http_dedup_paced",
        }
    }

    /// When the `batch`-th of a lane's `inserts` may start.
    fn start(self, started: Instant, batch: usize, inserts: usize) -> Instant {
        match self {
            Self::DeduplicatedOver(duration) => {
                started + duration.mul_f64(batch as f64 / inserts as f64)
            }
            Self::Bare | Self::Deduplicated => started,
        }
    }
}

/// The rows (a) landed, as ClickHouse itself encodes them in RowBinary:
/// batches of at most `--batch-max-rows`, in one lane per Kafka partition,
/// as the sink inserts them. Encoded once, sent by every (b) run.
pub struct Encoded {
    lanes: Vec<Vec<Vec<u8>>>,
}

/// Encodes the rows of `source`'s `events` for (b).
pub async fn encode(settings: &Settings, source: &Harness) -> Encoded {
    let batches = settings.rows.div_ceil(settings.batch.max_rows).max(1);
    let reader = Client::default().with_url(clickhouse_url());
    let mut lanes: Vec<Vec<Vec<u8>>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
    for batch in 0..batches {
        let rows = reader
            .query(&format!(
                "SELECT * FROM {}.events WHERE cityHash64(event_id) % ? = ?",
                source.database
            ))
            .bind(batches as u64)
            .bind(batch as u64)
            .fetch_bytes("RowBinary")
            .expect("encode rows")
            .collect()
            .await
            .expect("encoded rows");
        lanes[batch % PARTITIONS as usize].push(rows.to_vec());
    }
    Encoded { lanes }
}

/// (b): the `encoded` rows LZ4-compressed, then, on the clock, POSTed
/// straight to ClickHouse as `pace` says.
pub async fn http(settings: &Settings, encoded: &Encoded, pace: Pace) -> Throughput {
    let harness = phase(pace.phase()).await;
    let lanes: Vec<Vec<CompressedData>> = encoded
        .lanes
        .iter()
        .map(|lane| {
            lane.iter()
                .map(|rows| CompressedData::new(rows, Compression::Lz4).expect("LZ4"))
                .collect()
        })
        .collect();
    let client = harness.config().clickhouse.client();
    let servers = Servers::find();
    let before = servers.now(None);
    let started = Instant::now();
    let mut inserts = JoinSet::new();
    for (lane_number, lane) in lanes.into_iter().enumerate() {
        let client = client.clone();
        inserts.spawn(async move {
            let lane_inserts = lane.len();
            for (batch_number, batch) in lane.into_iter().enumerate() {
                tokio::time::sleep_until(pace.start(started, batch_number, lane_inserts).into())
                    .await;
                let mut insert =
                    client.insert_formatted_with("INSERT INTO events FORMAT RowBinary");
                if pace.deduplicated() {
                    let token = format!("bench-{lane_number}-{batch_number}");
                    insert = lumen_sink::insert::deduplicated(insert, &token);
                }
                insert.send_compressed(batch).await.expect("send batch");
                insert.end().await.expect("batch acknowledged");
            }
        });
    }
    inserts.join_all().await;
    let run = Throughput {
        rows: settings.rows,
        total: started.elapsed(),
        first_read: None,
        cpu: servers.now(None).since(&before),
    };
    assert_eq!(
        harness.count("events").await,
        settings.rows as u64,
        "every row landed"
    );
    drop_database(&harness).await;
    run
}

/// (c): the Kafka table engine and a materialized view into `events`.
pub async fn kafka_engine(settings: &Settings, source: &Harness) -> Throughput {
    let harness = phase("engine").await;
    let client = harness.clickhouse();
    let columns: String = client
        .query(
            "SELECT arrayStringConcat(groupArray(concat(name, ' ', type)), ', ') FROM \
             (SELECT name, type FROM system.columns WHERE database = ? AND table = 'events' \
             AND default_kind != 'MATERIALIZED' ORDER BY position)",
        )
        .bind(&harness.database)
        .fetch_one()
        .await
        .expect("columns of events");
    let execute = |sql: String| {
        let client = client.clone();
        async move { client.query(&sql).execute().await.expect(&sql) }
    };

    // Keyed by event id, so the rows spread over every partition (without
    // a key, librdkafka's sticky partitioner puts them all in one).
    create_kafka_table(
        &client,
        "mirror_writer",
        &format!("{columns}, _key String"),
        &harness.enriched,
        &format!("{}-writer", harness.group()),
        "kafka_max_rows_per_message = 1, kafka_map_virtual_columns_on_write = 1",
    )
    .await;
    execute(format!(
        "INSERT INTO mirror_writer SELECT *, toString(event_id) FROM {}.events",
        source.database
    ))
    .await;
    execute("DROP TABLE mirror_writer SYNC".to_owned()).await;
    eventually("the mirror topic holds every row", || async {
        produced(&harness.enriched).await == settings.rows as i64
    })
    .await;

    let consumers = settings.engine_consumers;
    create_kafka_table(
        &client,
        "events_queue",
        &columns,
        &harness.enriched,
        &harness.group(),
        &format!(
            "kafka_num_consumers = {consumers}, kafka_thread_per_consumer = {}, \
             kafka_max_block_size = {}, kafka_flush_interval_ms = {}",
            u8::from(consumers > 1),
            settings.batch.max_rows,
            settings.batch.max_age_ms
        ),
    )
    .await;
    let started = Instant::now();
    execute(
        "CREATE MATERIALIZED VIEW events_from_queue TO events AS SELECT * FROM events_queue"
            .to_owned(),
    )
    .await;
    let read = format!(
        "SELECT sum(num_messages_read) FROM system.kafka_consumers WHERE database = '{}'",
        harness.database
    );
    // The engine tells nothing of what it inserted: ClickHouse is counted.
    let run = watch(
        &harness,
        settings.rows,
        started,
        || async { harness.scalar(&read).await > 0 },
        || harness.count("events"),
    )
    .await;
    harness.expect_exactly(settings.rows as u64).await;
    // Consumers stop before their topic is deleted.
    execute("DROP VIEW events_from_queue SYNC".to_owned()).await;
    execute("DROP TABLE events_queue SYNC".to_owned()).await;
    drop_database(&harness).await;
    run
}

/// Creates the Kafka engine table `name` on `topic`, RowBinary.
///
/// chdb-core 26.9 (the local ClickHouse) answers such a `CREATE` with
/// "Code: 49. Shutdown was called" although the table is created and
/// consumes and produces normally: what counts is that the table exists.
async fn create_kafka_table(
    client: &Client,
    name: &str,
    columns: &str,
    topic: &str,
    group: &str,
    settings: &str,
) {
    let sql = format!(
        "CREATE TABLE {name} ({columns}) ENGINE = Kafka SETTINGS kafka_broker_list = '{}', \
         kafka_topic_list = '{topic}', kafka_group_name = '{group}', kafka_format = 'RowBinary', \
         {settings}",
        brokers()
    );
    if let Err(error) = client.query(&sql).execute().await {
        let exists: u8 = client
            .query("EXISTS TABLE ?")
            .bind(Identifier(name))
            .fetch_one()
            .await
            .expect("EXISTS TABLE");
        assert!(exists == 1, "{sql}: {error}");
        eprintln!("note: ClickHouse answered CREATE TABLE {name} with \"{error}\", yet created it");
    }
}

/// Messages in `topic`: the sum of its partitions' high watermarks.
async fn produced(topic: &str) -> i64 {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .expect("watermarks consumer");
        (0..PARTITIONS)
            .map(|partition| {
                consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .map_or(0, |(_, high)| high)
            })
            .sum()
    })
    .await
    .expect("watermarks task")
}
