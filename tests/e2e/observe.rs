//! Watching the pipeline from outside: beacon-to-queryable latency probes,
//! and a real Prometheus scraping the three admin ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clickhouse::Client;
use lumen_e2e::send::Sender;
use lumen_e2e::{Population, Simulation, Truth};

use crate::harness::{eventually, free_port, workspace_root};

/// Sends `count` readers one after another, each time measuring how long
/// after ingest's 202 the pageview is queryable in ClickHouse. Returns the
/// latencies and the truth of what was sent.
pub async fn latency_probes(
    ingest_url: &str,
    clickhouse: &Client,
    count: usize,
    interval: Duration,
) -> (Vec<Duration>, Truth) {
    let population = Population {
        share_probability: 0.0,
        address_bar_probability: 0.0,
        ..Population::default()
    };
    let sender = Sender::new(
        ingest_url,
        &population.site_origin,
        Duration::from_secs(120),
    );
    let mut simulation = Simulation::new(population, 0x9e37_79b9);
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let beacons = simulation.next_reader(now_ms());
        let event_id = beacons[0].events[0]["event_id"]
            .as_str()
            .expect("event id")
            .to_owned();
        for beacon in &beacons {
            sender.send(beacon).await.expect("probe delivered");
        }
        let accepted = Instant::now();
        loop {
            let seen: u64 = clickhouse
                .query("SELECT count() FROM events WHERE event_id = toUUID(?)")
                .bind(&event_id)
                .fetch_one()
                .await
                .unwrap_or(0);
            if seen > 0 {
                latencies.push(accepted.elapsed());
                break;
            }
            assert!(
                accepted.elapsed() < Duration::from_secs(120),
                "probe {event_id} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(interval).await;
    }
    (latencies, simulation.truth().clone())
}

/// The `q`-quantile of `samples` (nearest rank).
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A real Prometheus (Debian's package) scraping the given admin ports every second.
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with a scrape job per `(job, port)`.
    pub async fn start(name: &str, targets: &[(&str, u16)]) -> Self {
        let dir = workspace_root()
            .join(".lumen/e2e")
            .join(name)
            .join("prometheus");
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, port) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("prometheus config");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect(
                "prometheus (Debian package `prometheus`) must be installed: make test installs it",
            );
        let prometheus = Self {
            child,
            port,
            _dir: dir,
        };
        eventually("prometheus ready", Duration::from_secs(60), || async {
            reqwest::get(format!("http://127.0.0.1:{}/-/ready", prometheus.port))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        prometheus
    }

    /// The sum of an instant query's values, `None` when it has no series.
    pub async fn value(&self, query: &str) -> Option<f64> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let series = body["data"]["result"].as_array()?;
        if series.is_empty() {
            return None;
        }
        Some(
            series
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .sum(),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
