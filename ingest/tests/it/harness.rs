//! Shared harness: an ephemeral topic that deletes itself, the service
//! started in-process on port 0, a raw HTTP/1.1 client (raw so that tests
//! can also send what no well-behaved client sends), and a consumer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lumen_ingest::Config;
use lumen_runtime::{KafkaConfig, Shutdown};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Partitions of each test topic, as on the real topics.
pub const PARTITIONS: i32 = 3;
/// Secret used by every test service.
pub const SECRET: &str = "integration-test-secret";
/// Generous bound for conditions polled by tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn brokers() -> String {
    std::env::var("LUMEN_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A topic named after the test, deleted on drop.
pub struct EphemeralTopic {
    pub name: String,
    admin: AdminClient<DefaultClientContext>,
}

impl EphemeralTopic {
    pub async fn create(test: &str) -> Self {
        let name = unique(&format!("lumen-ingest-it-{test}"));
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .expect("admin client");
        let topic = NewTopic::new(&name, PARTITIONS, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topic");
        for result in results {
            result.expect("topic created");
        }
        Self { name, admin }
    }

    /// Total records in the topic (sum of high watermarks).
    pub fn record_count(&self) -> i64 {
        let consumer = consumer();
        (0..PARTITIONS)
            .map(|partition| {
                consumer
                    .fetch_watermarks(&self.name, partition, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .sum()
    }

    /// Reads records from the beginning until `count` arrived or the deadline.
    pub fn consume(&self, count: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let consumer = consumer();
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(&self.name, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let started = Instant::now();
        let mut records = Vec::new();
        while records.len() < count && started.elapsed() < DEADLINE {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("consume");
                records.push((
                    message.key().unwrap_or_default().to_vec(),
                    message.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
        records
    }
}

impl Drop for EphemeralTopic {
    fn drop(&mut self) {
        let admin = &self.admin;
        let name = self.name.clone();
        // Drop cannot await; the tests run on the multi-threaded runtime.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let _ = admin.delete_topics(&[&name], &AdminOptions::new()).await;
            })
        });
    }
}

fn consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("lumen-ingest-it"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// The example sites file of the crate.
pub fn sites_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sites.example.json")
}

/// A config for a test service on ephemeral ports writing to `topic`.
pub fn config(topic: &str) -> Config {
    let mut config = Config::default();
    config.http.listen_addr = "127.0.0.1:0".parse().expect("addr");
    config.admin.addr = Some("127.0.0.1:0".parse().expect("addr"));
    config.kafka = KafkaConfig {
        brokers: brokers(),
        options: Vec::new(),
    };
    config.topics.raw = topic.to_owned();
    config.privacy.visitor_secret = Some(SECRET.into());
    config.privacy.sites_file = Some(sites_file());
    config.producer.readiness_interval_ms = 200;
    config
}

/// A service running in-process.
pub struct Service {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    pub async fn start(config: Config) -> Self {
        let shutdown = Shutdown::new();
        let running = lumen_ingest::start(config, shutdown.clone())
            .await
            .expect("service starts");
        let (public, admin) = (running.public_addr, running.admin_addr);
        Self {
            public,
            admin,
            shutdown,
            task: tokio::spawn(running.wait()),
        }
    }

    /// Triggers shutdown and waits for a clean exit.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("stops in time")
            .expect("join")
            .expect("clean exit");
    }

    /// Polls `/readyz` until it answers `status`.
    pub async fn wait_ready(&self, status: u16) {
        let started = Instant::now();
        loop {
            let answer = get(self.admin, "/readyz", &[]).await;
            if answer.status == status {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "readyz stayed {}",
                answer.status
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn parse(raw: &[u8]) -> Self {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status = lines.next().expect("status line")[9..12]
            .parse()
            .expect("status code");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }
}

/// Sends raw request bytes and reads the answer until the server closes.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_answer(&mut stream).await
}

pub async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("answer in time")
        .expect("read");
    Answer::parse(&response)
}

/// A request's bytes with `Connection: close` and `Content-Length`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    raw(addr, &request("GET", path, headers, b"")).await
}

pub async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    raw(addr, &request("POST", "/v1/events", headers, body)).await
}
