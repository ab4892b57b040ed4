//! What every test shares: uniquely named ephemeral topics (deleted on drop),
//! a fresh ClickHouse database per test, a producer of enriched events, the
//! sink started in-process, polling with deadlines, and the check that every
//! aggregate equals a recount over `events`.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use lumen_schemas::{Codec, EnrichedEvent};
use lumen_sink::Config;
use lumen_sink::decode::Rows;
use lumen_sink::insert::{ClickHouseTable, InsertError, Table};
use lumen_sink::row::sample;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Partitions of the test topics, like the real ones.
pub const PARTITIONS: i32 = 3;

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn brokers() -> String {
    std::env::var("LUMEN_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

pub fn clickhouse_url() -> String {
    std::env::var("LUMEN_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

/// A `lumen-sink` child process, killed when dropped still running: a
/// test that fails half-way must not leave it writing.
pub struct SinkChild(std::process::Child);

impl std::ops::Deref for SinkChild {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for SinkChild {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for SinkChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One test's topics and database.
pub struct Harness {
    pub name: String,
    pub enriched: String,
    pub dlq: String,
    pub database: String,
    pub producer: FutureProducer,
    pub codec: Codec<EnrichedEvent>,
}

impl Harness {
    /// Creates `<name>`'s topics and drops its database.
    pub async fn new(name: &str) -> Self {
        let unique = format!("{name}_{}", now_ms() % 1_000_000_000);
        let enriched = format!("it.sink.{unique}.enriched");
        let dlq = format!("it.sink.{unique}.dlq");
        let admin = admin();
        let topics = [enriched.as_str(), dlq.as_str()]
            .map(|topic| NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1)));
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
        let database = format!("lumen_it_sink_{name}");
        Client::default()
            .with_url(clickhouse_url())
            .query(&format!("DROP DATABASE IF EXISTS {database} SYNC"))
            .execute()
            .await
            .expect("drop test database");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        Self {
            name: unique,
            enriched,
            dlq,
            database,
            producer,
            codec: Codec::new().expect("codec"),
        }
    }

    /// A sink config for this test: its topics, database and group, small
    /// batches, fast retries, a quick session timeout for restarts.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.kafka.brokers = brokers();
        config.kafka.options = vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
        ];
        config.topics.enriched = self.enriched.clone();
        config.topics.dlq = self.dlq.clone();
        config.consumer_group = self.group();
        config.admin.addr = Some("127.0.0.1:0".parse().expect("addr"));
        config.clickhouse.url = clickhouse_url();
        config.clickhouse.database = self.database.clone();
        config.batch.max_rows = 500;
        config.batch.max_age_ms = 200;
        config.batch.retry_initial_ms = 20;
        config.batch.retry_max_ms = 500;
        config.batch.insert_timeout_ms = 5_000;
        config
    }

    /// [`Self::sink_command`] started, with the quick session timeout and
    /// small, quickly cut batches of [`Self::config`], its log discarded.
    pub fn spawn_sink(&self, admin_port: u16) -> SinkChild {
        let child = self
            .sink_command(admin_port)
            .env(
                "LUMEN_KAFKA_OPTIONS",
                "session.timeout.ms=6000,heartbeat.interval.ms=500",
            )
            .env("LUMEN_SINK_BATCH_MAX_ROWS", "300")
            .env("LUMEN_SINK_BATCH_MAX_AGE_MS", "50")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn lumen-sink");
        SinkChild(child)
    }

    /// `lumen-sink` as a child process on this test's topics, group and
    /// database, its admin server on `admin_port`, logging warnings only.
    pub fn sink_command(&self, admin_port: u16) -> std::process::Command {
        let config = self.config();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lumen-sink"));
        command
            .env("LUMEN_KAFKA_BROKERS", &config.kafka.brokers)
            .env("LUMEN_TOPIC_ENRICHED", &config.topics.enriched)
            .env("LUMEN_TOPIC_DLQ", &config.topics.dlq)
            .env("LUMEN_SINK_CONSUMER_GROUP", &config.consumer_group)
            .env("LUMEN_CLICKHOUSE_URL", &config.clickhouse.url)
            .env("LUMEN_CLICKHOUSE_DATABASE", &config.clickhouse.database)
            .env("LUMEN_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        command
    }

    /// A client on this test's database.
    pub fn clickhouse(&self) -> Client {
        Client::default()
            .with_url(clickhouse_url())
            .with_database(&self.database)
    }

    /// Produces `events`, keyed like enrich does, and waits for every ack.
    pub async fn produce(&self, events: &[EnrichedEvent]) {
        let payloads: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| (key_of(e), self.codec.encode(e).expect("encode")))
            .collect();
        self.produce_raw(payloads.iter().map(|(k, p)| (k.as_bytes(), p.as_slice())))
            .await;
    }

    /// Produces raw payloads (for poison records).
    pub async fn produce_raw<'a>(&self, records: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        // Enqueue everything, then await the acknowledgements (an awaited
        // `send` per record would serialize on linger.ms).
        let deliveries: Vec<_> = records
            .map(|(key, payload)| {
                let record = FutureRecord::to(&self.enriched).key(key).payload(payload);
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueued")
            })
            .collect();
        for delivery in deliveries {
            delivery.await.expect("delivered").expect("produced");
        }
    }

    /// The consumer group of the sinks of this test.
    pub fn group(&self) -> String {
        format!("it-sink-{}", self.name)
    }

    /// Whether the group's committed offsets reached the end of every
    /// partition (asked without joining the group).
    pub async fn all_committed(&self) -> bool {
        let (group, topic) = (self.group(), self.enriched.clone());
        let lagging = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("group.id", group)
                .create()
                .expect("offsets consumer");
            let mut list = TopicPartitionList::new();
            for partition in 0..PARTITIONS {
                list.add_partition(&topic, partition);
            }
            let committed = consumer
                .committed_offsets(list, Duration::from_secs(10))
                .ok()?;
            let mut lagging = false;
            for partition in 0..PARTITIONS {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .ok()?;
                let done = match committed.find_partition(&topic, partition)?.offset() {
                    Offset::Offset(offset) => offset >= high,
                    _ => high == 0,
                };
                lagging |= !done;
            }
            Some(lagging)
        })
        .await
        .expect("offsets task");
        lagging == Some(false)
    }

    /// `SELECT count()` of a table.
    pub async fn count(&self, table: &str) -> u64 {
        self.scalar(&format!("SELECT count() FROM {}.{table}", self.database))
            .await
    }

    /// A `UInt64` query; 0 when the query fails (table not created yet).
    pub async fn scalar(&self, sql: &str) -> u64 {
        self.clickhouse()
            .query(sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    }

    /// Waits until the sink committed every record produced, then checks
    /// that `events` holds exactly `n` rows, none twice, and that every
    /// aggregate is exact.
    pub async fn expect_exactly(&self, n: u64) {
        eventually("every record committed", || self.all_committed()).await;
        assert_eq!(
            self.count("events").await,
            n,
            "rows in events once every record is committed"
        );
        let distinct = self
            .scalar(&format!(
                "SELECT uniqExact(event_id) FROM {}.events",
                self.database
            ))
            .await;
        assert_eq!(distinct, n, "an event was written twice");
        self.expect_exact_aggregates().await;
    }

    /// Every aggregate table equals a recount over `events`.
    pub async fn expect_exact_aggregates(&self) {
        let db = &self.database;
        let checks = [
            (
                "traffic_per_minute",
                format!(
                    "SELECT site_id, minute, channel, channel_source, sum(visits), uniqCombinedMerge(visitors), sum(shares_copy), sum(shares_button), sum(shares_native), sum(preview_fetches) \
                     FROM {db}.traffic_per_minute GROUP BY ALL ORDER BY ALL"
                ),
                format!(
                    "SELECT site_id, toStartOfMinute(received_at) AS minute, channel, channel_source, \
                     countIf(kind = 'pageview' AND NOT is_bot), uniqCombinedIf(visitor_id, kind = 'pageview' AND NOT is_bot), \
                     countIf(kind = 'share' AND share_method = 'copy'), countIf(kind = 'share' AND share_method = 'button'), \
                     countIf(kind = 'share' AND share_method = 'native'), countIf(preview_app != '') \
                     FROM {db}.events GROUP BY ALL ORDER BY ALL"
                ),
            ),
            (
                "previews_per_minute",
                format!(
                    "SELECT site_id, minute, preview_app, sum(fetches) FROM {db}.previews_per_minute GROUP BY ALL ORDER BY ALL"
                ),
                format!(
                    "SELECT site_id, toStartOfMinute(received_at) AS minute, preview_app, count() FROM {db}.events \
                     WHERE preview_app != '' GROUP BY ALL ORDER BY ALL"
                ),
            ),
            (
                "share_ratio",
                format!(
                    "SELECT site_id, toString(bucket_size), bucket, dark_social_visits, public_social_visits, dark_public_ratio \
                     FROM {db}.share_ratio ORDER BY ALL"
                ),
                format!(
                    "SELECT site_id, bucket_size, bucket, d, p, if(p = 0, NULL, d / p) FROM ( \
                     SELECT site_id, bucket_size, \
                     multiIf(bucket_size = 'minute', toStartOfMinute(received_at), bucket_size = 'hour', toStartOfHour(received_at), toStartOfDay(received_at)) AS bucket, \
                     countIf(channel = 'dark_social') AS d, countIf(channel = 'social') AS p \
                     FROM {db}.events ARRAY JOIN ['minute', 'hour', 'day'] AS bucket_size \
                     WHERE kind = 'pageview' AND NOT is_bot AND channel IN ('dark_social', 'social') GROUP BY ALL) ORDER BY ALL"
                ),
            ),
            (
                "minted_tokens",
                format!(
                    "SELECT site_id, token, minting_event_id FROM {db}.minted_tokens ORDER BY ALL"
                ),
                format!(
                    "SELECT site_id, minted_token, event_id FROM {db}.events \
                     WHERE kind = 'pageview' AND minted_token != '' AND NOT is_bot ORDER BY ALL"
                ),
            ),
        ];
        for (name, aggregate, recount) in checks {
            // A view's part becomes visible a moment after the part of
            // `events` written by the same insert: poll.
            eventually(
                &format!("{name} equal to a recount over events"),
                || async {
                    let recount = self.tsv(&recount).await;
                    !recount.is_empty() && self.tsv(&aggregate).await == recount
                },
            )
            .await;
        }
    }

    /// A query's result as TSV text.
    pub async fn tsv(&self, sql: &str) -> String {
        let mut cursor = self
            .clickhouse()
            .query(sql)
            .fetch_bytes("TSV")
            .expect("query");
        let bytes = cursor.collect().await.expect("result");
        String::from_utf8(bytes.to_vec()).expect("utf8")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let topics = [self.enriched.clone(), self.dlq.clone()];
        // Drop cannot await: delete on a thread with its own small runtime.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                let _ = runtime.block_on(admin().delete_topics(&names, &AdminOptions::new()));
            }
        });
        let _ = deleted.join();
    }
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client")
}

/// The Kafka key of DESIGN.md, as enrich writes it.
fn key_of(event: &EnrichedEvent) -> String {
    event
        .share_token
        .clone()
        .or_else(|| event.landing_token.clone())
        .unwrap_or_else(|| event.visitor_id.clone())
}

/// `n` sample events numbered from `from`, spread over the last minutes.
pub fn events(from: u64, n: u64) -> Vec<EnrichedEvent> {
    let now = now_ms();
    (from..from + n)
        .map(|i| sample::event(i, now - ((i % 300) as i64) * 1_000))
        .collect()
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free local port (bound and released), for a child process's admin server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on a local admin port: the raw response, `None` if refused.
pub async fn get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// The real table behind a gate: inserts wait until the test opens it.
pub struct GatedTable {
    pub inner: ClickHouseTable,
    pub open: tokio::sync::watch::Receiver<bool>,
}

impl Table for GatedTable {
    async fn insert(&self, rows: &mut Rows<'_>, token: &str) -> Result<(), InsertError> {
        let mut open = self.open.clone();
        // The sender lives as long as the test; an error cannot happen first.
        let _ = open.wait_for(|open| *open).await;
        self.inner.insert(rows, token).await
    }
}

/// The sink running in-process (`lumen_sink::run_with`) until stopped.
pub struct InProcessSink {
    shutdown: lumen_runtime::Shutdown,
    task: tokio::task::JoinHandle<lumen_sink::Result<()>>,
}

impl InProcessSink {
    /// `lumen_sink::run` with `config`.
    pub fn start(config: Config) -> Self {
        Self::start_with(config, ClickHouseTable::new)
    }

    /// `lumen_sink::run_with` with `config`, writing through the table
    /// `table` makes.
    pub fn start_with<T: Table + Send + Sync + 'static>(
        config: Config,
        table: impl FnOnce(Client, Duration) -> T + Send + 'static,
    ) -> Self {
        let shutdown = lumen_runtime::Shutdown::new();
        let task = tokio::spawn(lumen_sink::run_with(config, shutdown.clone(), table));
        Self { shutdown, task }
    }

    /// SIGTERM in-process, and a clean stop.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("join").expect("sink stops cleanly");
    }

    /// Stops it dead wherever it is, like a crash: nothing is flushed or
    /// committed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        self.shutdown.trigger();
    }
}

/// The sink in-process behind a [`GatedTable`] (closed), with its admin
/// server on a port of its own.
pub struct GatedSink {
    pub port: u16,
    gate: tokio::sync::watch::Sender<bool>,
    sink: InProcessSink,
}

impl GatedSink {
    pub fn start(mut config: Config) -> Self {
        let port = free_port();
        config.admin.addr = Some(([127, 0, 0, 1], port).into());
        let (gate, open) = tokio::sync::watch::channel(false);
        let sink = InProcessSink::start_with(config, move |client, timeout| GatedTable {
            inner: ClickHouseTable::new(client, timeout),
            open,
        });
        Self { port, gate, sink }
    }

    /// Lets every insert through, the waiting ones first.
    pub fn open(&self) {
        self.gate.send(true).expect("open the gate");
    }

    /// SIGTERM in-process, and a clean stop.
    pub async fn stop(self) {
        self.sink.stop().await;
    }
}

/// The value of an unlabelled metric in a Prometheus exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
