//! The release `lumen-enrich` as a child process on the bench's topics,
//! as an operator runs it: flags through `LUMEN_*` variables, its own
//! consumer group and `transactional.id`, admin port for `/metrics`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lumen_runtime::TopicsConfig;
use lumen_runtime::process::cpu_ticks;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// How long a SIGTERM'd service may take to commit and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary: `LUMEN_ENRICH_BIN`, else the one cargo built for this bench
/// (bench profile = release settings).
pub fn binary() -> PathBuf {
    std::env::var_os("LUMEN_ENRICH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_lumen-enrich")),
        PathBuf::from,
    )
}

/// A running `lumen-enrich`.
pub struct Service {
    child: Child,
    admin_port: u16,
    log: PathBuf,
}

impl Service {
    /// Starts `binary` on `topics` with consumer group and
    /// `transactional.id` `group`, logging to `log`.
    pub fn start(
        binary: &Path,
        brokers: &str,
        topics: &TopicsConfig,
        group: &str,
        log: &Path,
    ) -> Self {
        let admin_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).expect("log directory");
        }
        let output = std::fs::File::create(log).expect("log file");
        let child = Command::new(binary)
            .env("LUMEN_KAFKA_BROKERS", brokers)
            .env("LUMEN_TOPIC_RAW", &topics.raw)
            .env("LUMEN_TOPIC_ENRICHED", &topics.enriched)
            .env("LUMEN_TOPIC_SHARES", &topics.shares)
            .env("LUMEN_TOPIC_DLQ", &topics.dlq)
            .env("LUMEN_ENRICH_GROUP_ID", group)
            .env("LUMEN_ENRICH_TRANSACTIONAL_ID", group)
            .env("LUMEN_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self {
            child,
            admin_port,
            log: log.to_owned(),
        }
    }

    /// Panics, pointing at the log, if the service has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "lumen-enrich exited with {status}; see {}",
                self.log.display()
            );
        }
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status (Linux only)");
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    /// User and system CPU seconds spent so far by every thread of the
    /// process (`/proc/<pid>/stat`): on a shared machine the events/s of a
    /// run move with whatever else runs, its CPU per event far less.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks = cpu_ticks(self.child.id()).expect("/proc/<pid>/stat (Linux only)");
        ticks as f64 / TICKS_PER_SECOND
    }

    /// The Prometheus exposition of `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin_port);
        let text = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("/metrics")
            .text()
            .await
            .expect("/metrics body");
        Metrics(text)
    }

    /// SIGTERM, then waits for the exit (the service commits its last
    /// batch first).
    pub fn stop(mut self) -> ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!(
            "lumen-enrich did not stop within {STOP_TIMEOUT:?}; see {}",
            self.log.display()
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A panicking bench must not leave the service consuming.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scrape of `/metrics`.
pub struct Metrics(String);

impl Metrics {
    /// The value of one series, written as in the exposition
    /// (`name` or `name{label="value"}`); 0 when absent (a counter never
    /// incremented has no labelled series).
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }
}
