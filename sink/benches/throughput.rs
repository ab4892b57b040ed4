//! `make bench-sink`: sink throughput into a real ClickHouse (and Kafka),
//! against a baseline measured in the same run.
//!
//! 1. In-memory batches: the sink's writer (dedup token, materialized views
//!    deduplicated, retry wrapper) vs a bare `clickhouse` crate insert of the
//!    same rows into the same table. Ratio = sink / bare.
//! 2. End to end: records produced to a fresh topic, then a sink started
//!    in-process; rows/s from start to the last offset committed.
//!
//! Environment: `LUMEN_CLICKHOUSE_URL`, `LUMEN_KAFKA_BROKERS`,
//! `LUMEN_BENCH_ROWS` (default 200 000).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use lumen_runtime::{Readiness, Shutdown};
use lumen_schemas::{Codec, EnrichedEvent};
use lumen_sink::batch::Keyed;
use lumen_sink::insert::{ClickHouseTable, Writer};
use lumen_sink::metrics::Metrics;
use lumen_sink::row::{EVENTS_TABLE, EventRow, Record, sample};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const BATCH_ROWS: usize = 50_000;
const ROUNDS: usize = 3;
const PARTITIONS: i32 = 3;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn events(round: usize, n: usize) -> Vec<EnrichedEvent> {
    let now = now_ms();
    let base = (round * n) as u64 + 1_000_000_000;
    (0..n as u64)
        .map(|i| sample::event(base + i, now - ((i % 3_600) as i64) * 1_000))
        .collect()
}

async fn fresh_database(client: &Client, database: &str) {
    client
        .query(&format!("DROP DATABASE IF EXISTS {database} SYNC"))
        .execute()
        .await
        .expect("drop bench database");
    lumen_schemas::migrate::migrate(client, database)
        .await
        .expect("migrate");
}

async fn bare_insert(client: &Client, rows: &[Keyed]) {
    for chunk in rows.chunks(BATCH_ROWS) {
        let mut insert = client
            .insert::<EventRow<'static>>(EVENTS_TABLE)
            .await
            .expect("insert");
        for row in chunk {
            insert.write(&row.record.row()).await.expect("write");
        }
        insert.end().await.expect("end");
    }
}

async fn sink_insert(writer: &Writer<ClickHouseTable>, rows: &[Keyed]) {
    for (partition, chunk) in rows.chunks(BATCH_ROWS).enumerate() {
        let (first, last) = (chunk[0].offset, chunk[chunk.len() - 1].offset);
        let refused = writer.write(partition as i32, first, last, chunk).await;
        assert!(refused.is_empty());
    }
}

fn rate(rows: usize, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

async fn in_memory(url: &str, n: usize) -> (f64, f64) {
    let database = "lumen_bench_sink";
    let admin = Client::default().with_url(url);
    fresh_database(&admin, database).await;
    let client = Client::default()
        .with_url(url)
        .with_database(database)
        .with_compression(clickhouse::Compression::Lz4);
    let writer = Writer::new(
        ClickHouseTable::new(client.clone(), Duration::from_secs(60)),
        "bench",
        Duration::from_millis(100),
        Duration::from_secs(1),
        Metrics::new().expect("metrics"),
        Readiness::new(),
    );
    let (mut bare, mut sink) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Distinct rows per round and per contender: the sink's dedup token
        // must never turn a measured insert into a no-op.
        let to_rows = |events: Vec<EnrichedEvent>| -> Vec<Keyed> {
            events
                .into_iter()
                .enumerate()
                .map(|(i, event)| Keyed {
                    offset: (round * 10 * n + i) as i64,
                    key: None,
                    record: Record::new(event).expect("record"),
                })
                .collect()
        };
        let bare_rows = to_rows(events(2 * round, n));
        let sink_rows: Vec<Keyed> = to_rows(events(2 * round + 1, n))
            .into_iter()
            .map(|mut row| {
                row.offset += (5 * n) as i64;
                row
            })
            .collect();
        let started = Instant::now();
        bare_insert(&client, &bare_rows).await;
        bare.push(rate(n, started.elapsed()));
        let started = Instant::now();
        sink_insert(&writer, &sink_rows).await;
        sink.push(rate(n, started.elapsed()));
    }
    let expected = (2 * ROUNDS * n) as u64;
    let count: u64 = client
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(count, expected, "every measured row landed");
    (median(bare), median(sink))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn end_to_end(url: &str, brokers: &str, n: usize) -> (f64, f64) {
    let unique = now_ms();
    let topic = format!("bench.sink.{unique}.enriched");
    let dlq = format!("bench.sink.{unique}.dlq");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let new_topics =
        [&topic, &dlq].map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)));
    for result in admin
        .create_topics(&new_topics, &AdminOptions::new())
        .await
        .expect("topics")
    {
        result.expect("topic");
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let codec = Codec::<EnrichedEvent>::new().expect("codec");
    let events = events(1_000, n);
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| codec.encode(e).expect("encode"))
        .collect();
    // Enqueue everything, then await the acknowledgements (an awaited
    // `send` per record would serialize on linger.ms).
    let mut deliveries = Vec::with_capacity(n);
    for (event, payload) in events.iter().zip(&payloads) {
        let record = FutureRecord::to(&topic)
            .key(&event.visitor_id)
            .payload(payload);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueued"),
        );
    }
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("produced");
    }

    let mut config = lumen_sink::Config::default();
    config.kafka.brokers = brokers.to_owned();
    config.topics.enriched = topic.clone();
    config.topics.dlq = dlq.clone();
    config.consumer_group = format!("bench-sink-{unique}");
    config.admin.addr = Some(([127, 0, 0, 1], 0).into());
    config.clickhouse.url = url.to_owned();
    config.clickhouse.database = "lumen_bench_sink_e2e".to_owned();
    Client::default()
        .with_url(url)
        .query("DROP DATABASE IF EXISTS lumen_bench_sink_e2e SYNC")
        .execute()
        .await
        .expect("drop");
    lumen_sink::migrate(&config).await.expect("migrate");
    let shutdown = Shutdown::new();
    let started = Instant::now();
    let sink = tokio::spawn(lumen_sink::run(config.clone(), shutdown.clone()));
    // The group join (the broker's initial rebalance delay, 3 s by default)
    // is not the sink's throughput: also time from the first rows landed.
    let first_rows = tokio::spawn({
        let client = Client::default().with_url(url);
        async move {
            loop {
                let count: u64 = client
                    .query("SELECT count() FROM lumen_bench_sink_e2e.events")
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                if count > 0 {
                    return (Instant::now(), count);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let group = config.consumer_group.clone();
    let watched = topic.clone();
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .create()
            .expect("offsets");
        loop {
            let mut list = TopicPartitionList::new();
            for partition in 0..PARTITIONS {
                list.add_partition(&watched, partition);
            }
            let committed = consumer
                .committed_offsets(list, Duration::from_secs(10))
                .expect("committed");
            let done = (0..PARTITIONS).all(|partition| {
                let (_, high) = consumer
                    .fetch_watermarks(&watched, partition, Duration::from_secs(10))
                    .expect("watermarks");
                committed
                    .find_partition(&watched, partition)
                    .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= high))
            });
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("watch");
    let elapsed = started.elapsed();
    let (first_at, first_count) = first_rows.await.expect("first rows");
    let steady = rate(n - first_count as usize, first_at.elapsed());
    shutdown.trigger();
    sink.await.expect("join").expect("sink");
    let count: u64 = Client::default()
        .with_url(url)
        .query("SELECT count() FROM lumen_bench_sink_e2e.events")
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(count, n as u64, "exactly every record landed");
    let _ = admin
        .delete_topics(&[&topic, &dlq], &AdminOptions::new())
        .await;
    (rate(n, elapsed), steady)
}

#[tokio::main]
async fn main() {
    let url = env_or("LUMEN_CLICKHOUSE_URL", "http://127.0.0.1:8123");
    let brokers = env_or("LUMEN_KAFKA_BROKERS", "127.0.0.1:9092");
    let n: usize = env_or("LUMEN_BENCH_ROWS", "200000")
        .parse()
        .expect("LUMEN_BENCH_ROWS is a number");

    let (bare, sink) = in_memory(&url, n).await;
    println!(
        "in-memory batches of {BATCH_ROWS} rows, {n} rows per round, median of {ROUNDS} rounds:"
    );
    println!("  bare clickhouse insert (baseline): {bare:>10.0} rows/s");
    println!("  sink writer (dedup token, MVs):    {sink:>10.0} rows/s");
    println!("  ratio sink / baseline:             {:>10.2}", sink / bare);
    let (e2e, steady) = end_to_end(&url, &brokers, n).await;
    println!("end to end, Kafka -> sink -> ClickHouse, {n} records, 3 partitions:");
    println!("  from start (incl. group join):     {e2e:>10.0} rows/s");
    println!("  from the first rows landed:        {steady:>10.0} rows/s");
    println!(
        "  ratio to the bare insert baseline: {:>10.2}",
        steady / bare
    );
}
