//! Shared set-up: private topics that delete themselves, the service
//! in-process on port 0, raw event builders, read_committed readers, and
//! polling with deadlines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumen_enrich::Config;
use lumen_runtime::{KafkaConfig, Shutdown, TopicsConfig};
use lumen_schemas::{Codec, EventKind, RawEvent, ShareMethod, ShareToken};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Partitions of every test topic.
pub const PARTITIONS: i32 = 3;
/// How long any condition may take to become true.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn brokers() -> String {
    std::env::var("LUMEN_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: brokers(),
        ..KafkaConfig::default()
    }
}

pub fn client(extra: &[(&str, &str)]) -> ClientConfig {
    kafka().client_config(extra)
}

pub fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The four topics of one test, deleted on drop.
pub struct Topics {
    pub names: TopicsConfig,
}

impl Topics {
    pub async fn create(test: &str) -> Self {
        let base = unique(&format!("it-enrich-{test}"));
        let names = TopicsConfig {
            raw: format!("{base}.raw"),
            enriched: format!("{base}.enriched"),
            shares: format!("{base}.shares"),
            dlq: format!("{base}.dlq"),
        };
        let admin: AdminClient<DefaultClientContext> = client(&[]).create().expect("admin client");
        let topics: Vec<NewTopic<'_>> = [&names.raw, &names.enriched, &names.dlq]
            .into_iter()
            .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
            .chain([
                NewTopic::new(&names.shares, PARTITIONS, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact"),
            ])
            .collect();
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
        Self { names }
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        let names = self.names.clone();
        // Drop cannot await: delete on a thread of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let admin: AdminClient<DefaultClientContext> =
                    client(&[]).create().expect("admin client");
                let topics =
                    [&names.raw, &names.enriched, &names.shares, &names.dlq].map(String::as_str);
                let _ = admin.delete_topics(&topics, &AdminOptions::new()).await;
            });
        });
        let _ = deleted.join();
    }
}

/// A service config for this test: its topics, group and transactional id.
pub fn config(topics: &Topics, group: &str) -> Config {
    let mut config = Config::with_defaults();
    config.kafka = kafka();
    config.topics = topics.names.clone();
    config.admin.addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.pipeline.group_id = group.to_owned();
    config.pipeline.transactional_id = Some(format!("{group}-0"));
    config.pipeline.batch_max_events = 50;
    config.pipeline.batch_max_wait_ms = 50;
    config
}

/// A running in-process service.
pub struct Service {
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    pub async fn start(config: Config) -> Self {
        let shutdown = Shutdown::new();
        let running = lumen_enrich::start(config, shutdown.clone())
            .await
            .expect("start");
        Self {
            admin: running.admin_addr,
            shutdown,
            task: running.task,
        }
    }

    /// Graceful stop: commits the open batch.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("join").expect("clean exit");
    }

    /// Hard stop, as a crash: the task is dropped wherever it is.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub async fn wait_ready(&self) {
        let admin = self.admin;
        eventually("readyz", || async move {
            http_get(admin, "/readyz").await.0 == 200
        })
        .await;
    }
}

/// Status and body of a GET on the admin server.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A valid token minted now.
pub fn token(seed: u8) -> String {
    ShareToken::new(now_ms(), [seed, 1, 2, 3, 4, 5, 6]).encode()
}

pub const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

pub fn pageview(event_id: &str, visitor: &str) -> RawEvent {
    RawEvent {
        event_id: event_id.to_owned(),
        site_id: "daily-planet".to_owned(),
        kind: EventKind::Pageview,
        received_at: now_ms(),
        sent_at: None,
        url: "https://dailyplanet.example/news/2026/solar-eclipse-tonight".to_owned(),
        referrer: None,
        user_agent: IPHONE.to_owned(),
        visitor_id: visitor.to_owned(),
        minted_token: None,
        landing_token: None,
        webview: None,
        share_token: None,
        share_method: None,
        share_target: None,
        parent_token: None,
    }
}

pub fn share(event_id: &str, visitor: &str, token: &str, target: &str) -> RawEvent {
    RawEvent {
        kind: EventKind::Share,
        share_token: Some(token.to_owned()),
        share_method: Some(ShareMethod::Button),
        share_target: Some(target.to_owned()),
        ..pageview(event_id, visitor)
    }
}

/// Writes raw records (as ingest does: keyed by the partition key).
pub async fn produce_raw(topics: &Topics, events: &[RawEvent]) {
    produce_raw_to(&topics.names.raw, events).await;
}

/// [`produce_raw`] by topic name, for tasks that do not own the topics.
pub async fn produce_raw_to(topic: &str, events: &[RawEvent]) {
    let codec = Codec::<RawEvent>::new().expect("codec");
    let records: Vec<(Vec<u8>, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (
                e.partition_key().as_bytes().to_vec(),
                codec.encode(e).expect("encode"),
            )
        })
        .collect();
    produce_bytes_to(topic, &records).await;
}

/// Writes arbitrary key/payload records to the raw topic.
pub async fn produce_bytes(topics: &Topics, records: &[(Vec<u8>, Vec<u8>)]) {
    produce_bytes_to(&topics.names.raw, records).await;
}

async fn produce_bytes_to(topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    // Idempotent: all records in flight at once keep their order.
    let producer: FutureProducer = client(&[("acks", "all"), ("enable.idempotence", "true")])
        .create()
        .expect("producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|(key, payload)| {
            producer
                .send_result(FutureRecord::to(topic).key(key).payload(payload))
                .map_err(|(error, _)| error)
                .expect("enqueued")
        })
        .collect();
    for delivery in deliveries {
        delivery.await.expect("not cancelled").expect("delivered");
    }
}

/// Every committed record of `topic`, read to the end of each partition.
pub async fn read_committed(topic: &str) -> Vec<OwnedMessage> {
    read_to_end(topic, "read_committed").await
}

/// Every record of `topic`, aborted transactions' included.
pub async fn read_uncommitted(topic: &str) -> Vec<OwnedMessage> {
    read_to_end(topic, "read_uncommitted").await
}

async fn read_to_end(topic: &str, isolation: &'static str) -> Vec<OwnedMessage> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_to_end_blocking(&topic, isolation))
        .await
        .expect("reader task")
}

fn read_to_end_blocking(topic: &str, isolation: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client(&[
        ("group.id", &unique("it-enrich-reader")),
        ("isolation.level", isolation),
        ("enable.partition.eof", "true"),
        ("enable.auto.commit", "false"),
    ])
    .create()
    .expect("reader");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut ended = 0;
    let mut messages = Vec::new();
    let started = Instant::now();
    while ended < PARTITIONS {
        assert!(started.elapsed() < DEADLINE, "timed out reading {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => messages.push(message.detach()),
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    messages
}

/// Whether `group` has committed every record of `raw`.
fn caught_up(raw: &str, group: &str) -> bool {
    let consumer: BaseConsumer = client(&[("group.id", group)]).create().expect("probe");
    let mut list = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in 0..PARTITIONS {
        list.add_partition(raw, partition);
        let (_, high) = consumer
            .fetch_watermarks(raw, partition, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(partition, high);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed");
    committed.elements().iter().all(|e| {
        let end = ends[&e.partition()];
        match e.offset() {
            Offset::Offset(offset) => offset >= end,
            _ => end == 0,
        }
    })
}

pub async fn wait_caught_up(topics: &Topics, group: &str) {
    eventually("the group to commit every raw record", || {
        let raw = topics.names.raw.clone();
        let group = group.to_owned();
        async move {
            tokio::task::spawn_blocking(move || caught_up(&raw, &group))
                .await
                .expect("probe task")
        }
    })
    .await;
}
