//! The product under test: the `lumen-sink` binary built by `cargo bench`
//! (release profile), as a child process configured only through its
//! `LUMEN_*` variables, like a deployment. Whatever `LUMEN_SINK_*` tuning the
//! bench's environment carries reaches it too.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::harness::{Harness, free_port, get};

/// A running `lumen-sink`, killed if dropped while running.
pub struct SinkProcess {
    child: Child,
    admin_port: u16,
}

impl SinkProcess {
    /// Starts the sink on `harness`'s topic, group and database.
    pub fn spawn(harness: &Harness) -> Self {
        let admin_port = free_port();
        let child = harness
            .sink_command(admin_port)
            .spawn()
            .expect("spawn lumen-sink");
        Self { child, admin_port }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `lumen_sink_records_consumed_total`; 0 until the admin server answers.
    pub async fn records_read(&self) -> u64 {
        self.metric("lumen_sink_records_consumed_total").await as u64
    }

    /// `lumen_sink_rows_written_total`: rows ClickHouse acknowledged.
    pub async fn rows_written(&self) -> u64 {
        self.metric("lumen_sink_rows_written_total").await as u64
    }

    /// Mean insert duration so far, from `lumen_sink_insert_duration_seconds`.
    pub async fn mean_insert(&self) -> Duration {
        let name = "lumen_sink_insert_duration_seconds";
        let sum = self.metric(&format!("{name}_sum")).await;
        let count = self.metric(&format!("{name}_count")).await;
        Duration::from_secs_f64(if count > 0.0 { sum / count } else { 0.0 })
    }

    /// Seconds spent in acknowledged inserts so far, summed over the
    /// partitions' concurrent inserts.
    pub async fn insert_seconds(&self) -> f64 {
        self.metric("lumen_sink_insert_duration_seconds_sum").await
    }

    /// Acknowledged inserts so far.
    pub async fn inserts(&self) -> u64 {
        self.metric("lumen_sink_insert_duration_seconds_count")
            .await as u64
    }

    /// `lumen_sink_seconds_since_last_insert`: how long ago ClickHouse
    /// acknowledged the sink's last insert.
    pub async fn seconds_since_last_insert(&self) -> f64 {
        self.metric("lumen_sink_seconds_since_last_insert").await
    }

    /// `lumen_sink_retries_total`, summed over its reasons.
    pub async fn retries(&self) -> u64 {
        self.metric("lumen_sink_retries_total").await as u64
    }

    /// The sum of the samples of `name` on `/metrics` over all their labels
    /// (the value itself for an unlabelled one); 0 when absent.
    async fn metric(&self, name: &str) -> f64 {
        let Some(metrics) = get(self.admin_port, "/metrics").await else {
            return 0.0;
        };
        metrics
            .lines()
            .filter_map(|line| line.strip_prefix(name))
            .filter(|rest| rest.starts_with([' ', '{']))
            .filter_map(|rest| rest.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
            .sum()
    }

    /// The peak resident set so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status of the sink");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    /// SIGTERM, then checks the sink flushed and exited 0 in time.
    pub async fn terminate(mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(term.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the sink") {
                assert!(status.success(), "lumen-sink exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "lumen-sink ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
