//! CPU time spent during a timed run by the sink, ClickHouse and Kafka,
//! from `/proc/<pid>/stat`. On this shared machine the rows/s of a run
//! move with whatever else runs on the same cores; the CPU-seconds each
//! process spends on the same rows move far less, and tell which of them
//! the ratio is waiting for. ClickHouse and Kafka are found as the local
//! processes listening on their configured ports (`ss`); elsewhere (a
//! container, another host) their figures are left out.

use std::process::Command;

use lumen_runtime::process::cpu_ticks;

use crate::harness::{brokers, clickhouse_url};

/// CPU seconds spent by each watched process, so far or over a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// The sink process, when one runs.
    pub sink: Option<f64>,
    /// The local ClickHouse server.
    pub clickhouse: Option<f64>,
    /// The local Kafka broker.
    pub kafka: Option<f64>,
}

impl Usage {
    /// What was spent between `start` and `self`; a process absent at the
    /// start (the sink, spawned by the run) counts from zero.
    pub fn since(&self, start: &Usage) -> Usage {
        let delta = |now: Option<f64>, then: Option<f64>| now.map(|now| now - then.unwrap_or(0.0));
        Usage {
            sink: delta(self.sink, start.sink),
            clickhouse: delta(self.clickhouse, start.clickhouse),
            kafka: delta(self.kafka, start.kafka),
        }
    }
}

/// The servers' processes, found once.
pub struct Servers {
    clickhouse: Option<u32>,
    kafka: Option<u32>,
    ticks_per_second: f64,
}

impl Servers {
    /// Finds the local ClickHouse and Kafka by their listening ports.
    pub fn find() -> Self {
        let port = |address: &str| {
            address
                .trim_end_matches('/')
                .rsplit(':')
                .next()
                .and_then(|port| port.parse::<u16>().ok())
        };
        let brokers = brokers();
        let first_broker = brokers.split(',').next().unwrap_or_default();
        let ticks_per_second = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|ticks| ticks.trim().parse().ok())
            .unwrap_or(100.0);
        Self {
            clickhouse: port(&clickhouse_url()).and_then(listener),
            kafka: port(first_broker).and_then(listener),
            ticks_per_second,
        }
    }

    /// CPU seconds so far of the servers and of the sink `sink`.
    pub fn now(&self, sink: Option<u32>) -> Usage {
        let seconds = |pid: Option<u32>| {
            pid.and_then(cpu_ticks)
                .map(|ticks| ticks as f64 / self.ticks_per_second)
        };
        Usage {
            sink: seconds(sink),
            clickhouse: seconds(self.clickhouse),
            kafka: seconds(self.kafka),
        }
    }
}

/// The pid of the local process listening on TCP `port`.
fn listener(port: u16) -> Option<u32> {
    let out = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let listing = String::from_utf8(out.stdout).ok()?;
    let rest = &listing[listing.find("pid=")? + "pid=".len()..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?]
        .parse()
        .ok()
}
