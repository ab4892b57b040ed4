//! Runs the real pipeline for a test: private topics and a private
//! ClickHouse database, and the three built binaries as child processes that
//! a test can SIGKILL and restart. Logs go to `.lumen/e2e/<test>/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Consumer-group settings that let a restarted consumer take over a killed
/// one's partitions in seconds (the broker's minimum session) instead of the
/// 45 s default: the fault tests kill consumers on purpose.
const FAST_FAILOVER: &str = "session.timeout.ms=6000,heartbeat.interval.ms=1500";

/// The workspace root (`tests/` is one level down).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The built binary of service `name` (`ingest`, `enrich`, `sink`).
/// `cargo test -p lumen-e2e` does not build the services, so a binary older
/// than its crate's sources fails the test here rather than testing old code.
fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let path = target.join("debug").join(format!("lumen-{name}"));
    let built = modified(&path)
        .unwrap_or_else(|| panic!("{} is missing: run `cargo build` first", path.display()));
    let inputs = [
        &format!("{name}/src"),
        "runtime/src",
        "schemas/src",
        "schemas/avro",
        "schemas/migrations",
    ];
    let sources = inputs
        .iter()
        .filter_map(|dir| newest_file(&workspace_root().join(dir)))
        .max();
    assert!(
        sources.is_none_or(|newest| newest <= built),
        "{} is older than its sources: run `cargo build` first",
        path.display()
    );
    path
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir` (hidden files
/// and folders, editors' droppings, are skipped).
fn newest_file(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest_file(&path)
            } else {
                modified(&path)
            }
        })
        .max()
}

/// Kafka brokers of the test infrastructure.
pub fn brokers() -> String {
    std::env::var("LUMEN_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// ClickHouse HTTP URL of the test infrastructure.
pub fn clickhouse_url() -> String {
    std::env::var("LUMEN_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `condition` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One of the three binaries, run as a child process.
pub struct Service {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Admin port (`/metrics`, `/readyz`).
    pub admin_port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Service {
    fn new(name: &'static str, dir: &Path, env: Vec<(String, String)>) -> Self {
        let admin_port = free_port();
        let mut env = env;
        env.push(("LUMEN_ADMIN_ADDR".into(), format!("127.0.0.1:{admin_port}")));
        env.push(("LUMEN_LOG_FORMAT".into(), "json".into()));
        Self {
            name,
            args: Vec::new(),
            env,
            log: dir.join(format!("{name}.log")),
            admin_port,
            child: None,
            starts: 0,
        }
    }

    /// Starts the process (appending to its log) and waits until `/readyz` says ready.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary(self.name))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("LUMEN_E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start lumen-{} (run `make build`): {e}", self.name));
        self.child = Some(child);
        self.starts += 1;
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        let name = self.name;
        let log = self.log.clone();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("lumen-{name} exited with {status}; see {}", log.display());
            }
            let ready = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lumen-{name} not ready after 60 s; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no flush, no commit, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit and returns its status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The whole pipeline of one test.
pub struct Pipeline {
    /// Test name; prefixes topics, groups and the database.
    pub name: String,
    /// Database the sink writes.
    pub database: String,
    /// Public URL of ingest.
    pub ingest_url: String,
    /// lumen-ingest.
    pub ingest: Service,
    /// lumen-enrich.
    pub enrich: Service,
    /// lumen-sink.
    pub sink: Service,
    topics: Vec<String>,
}

impl Pipeline {
    /// Creates topics and starts the three services.
    pub async fn start(test: &str) -> Self {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!("e2e_{test}_{stamp}");
        let dir = workspace_root().join(".lumen/e2e").join(&name);
        std::fs::create_dir_all(&dir).expect("log dir");
        let topic = |t: &str| format!("{name}.{t}");
        let topics = vec![
            topic("raw"),
            topic("enriched"),
            topic("shares"),
            topic("dlq"),
        ];
        create_topics(&topics).await;

        let common = vec![
            ("LUMEN_KAFKA_BROKERS".to_owned(), brokers()),
            ("LUMEN_TOPIC_RAW".to_owned(), topics[0].clone()),
            ("LUMEN_TOPIC_ENRICHED".to_owned(), topics[1].clone()),
            ("LUMEN_TOPIC_SHARES".to_owned(), topics[2].clone()),
            ("LUMEN_TOPIC_DLQ".to_owned(), topics[3].clone()),
        ];
        let with = |extra: &[(&str, String)]| {
            let mut env = common.clone();
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };
        let ingest_port = free_port();
        let root = workspace_root();
        let database = name.clone();
        let mut pipeline = Self {
            ingest: Service::new(
                "ingest",
                &dir,
                with(&[
                    ("LUMEN_LISTEN_ADDR", format!("127.0.0.1:{ingest_port}")),
                    (
                        "LUMEN_SITES_FILE",
                        root.join("ingest/sites.example.json").display().to_string(),
                    ),
                    (
                        "LUMEN_VISITOR_SECRET",
                        "end-to-end-test-secret-of-32-bytes!".to_owned(),
                    ),
                    ("LUMEN_TRUSTED_PROXIES", "127.0.0.1/32,::1/128".to_owned()),
                    (
                        "LUMEN_TRACKER_FILE",
                        root.join("tracker/dist/t.js").display().to_string(),
                    ),
                ]),
            ),
            enrich: Service::new(
                "enrich",
                &dir,
                with(&[
                    ("LUMEN_ENRICH_GROUP_ID", format!("{name}.enrich")),
                    ("LUMEN_ENRICH_TRANSACTIONAL_ID", format!("{name}.enrich")),
                    ("LUMEN_KAFKA_OPTIONS", FAST_FAILOVER.to_owned()),
                ]),
            ),
            sink: Service::new(
                "sink",
                &dir,
                with(&[
                    ("LUMEN_SINK_CONSUMER_GROUP", format!("{name}.sink")),
                    ("LUMEN_CLICKHOUSE_URL", clickhouse_url()),
                    ("LUMEN_CLICKHOUSE_DATABASE", database.clone()),
                    ("LUMEN_SINK_BATCH_MAX_AGE_MS", "200".to_owned()),
                    ("LUMEN_KAFKA_OPTIONS", FAST_FAILOVER.to_owned()),
                ]),
            ),
            ingest_url: format!("http://127.0.0.1:{ingest_port}"),
            database,
            name,
            topics,
        };
        pipeline.sink.start().await;
        pipeline.enrich.start().await;
        pipeline.ingest.start().await;
        pipeline
    }

    /// A ClickHouse client on the pipeline's database.
    pub fn clickhouse(&self) -> Client {
        Client::default()
            .with_url(clickhouse_url())
            .with_database(&self.database)
    }

    /// Stops the services and drops the topics and the database.
    pub async fn teardown(mut self) {
        for service in [&mut self.ingest, &mut self.enrich, &mut self.sink] {
            service.terminate();
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .expect("admin client");
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        let _ = Client::default()
            .with_url(clickhouse_url())
            .query(&format!("DROP DATABASE IF EXISTS {} SYNC", self.database))
            .execute()
            .await;
    }
}

async fn create_topics(names: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            let topic = NewTopic::new(name, 3, TopicReplication::Fixed(1));
            if name.ends_with(".shares") {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("cannot create {topic}: {code}"));
    }
}
