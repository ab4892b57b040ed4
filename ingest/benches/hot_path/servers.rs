//! What the HTTP loads are sent to: the real `lumen-ingest` release binary
//! as a child process (so that its memory is its own and the figures are
//! the product's), and the bare hyper baseline on a runtime of its own with
//! as many workers as the binary's.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use lumen_runtime::process::cpu_ticks;
use tokio::runtime::Runtime;

use crate::fixtures::SECRET;
use crate::load;

/// Longest wait for a started binary to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root (the bench runs from `ingest/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A free loopback address for a child to bind.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// Memory and CPU of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident.
    pub peak_kib: u64,
    /// User and system CPU time so far.
    pub cpu: Duration,
}

/// User and system CPU time used so far by `/proc/<entry>`: a process id,
/// `self` or a thread's `self/task/<tid>`.
pub fn cpu_time(entry: impl std::fmt::Display) -> Duration {
    let ticks = cpu_ticks(entry).expect("/proc/<entry>/stat");
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND as f64)
}

/// `lumen-ingest` running as a child process; killed on drop.
pub struct Ingest {
    child: Child,
    /// Where beacons go.
    pub public: SocketAddr,
}

impl Ingest {
    /// Starts the binary (`LUMEN_INGEST_BIN`, else the one cargo built for
    /// this bench) writing to `topic`, and waits until `/readyz` says ready.
    pub async fn start(brokers: &str, topic: &str) -> Self {
        let binary = std::env::var_os("LUMEN_INGEST_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_lumen-ingest")),
            PathBuf::from,
        );
        let public = free_addr();
        let admin = free_addr();
        let root = workspace_root();
        let child = Command::new(&binary)
            .current_dir(&root)
            .arg("--listen-addr")
            .arg(public.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(["--kafka-brokers", brokers, "--topic-raw", topic])
            .arg("--sites-file")
            .arg(root.join("ingest/sites.example.json"))
            .env("LUMEN_VISITOR_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            // Warnings on the bench's stderr, the figures alone on stdout.
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let mut ingest = Self { child, public };
        let deadline = Instant::now() + READY_TIMEOUT;
        while load::status(admin, "/readyz").await != Some(StatusCode::OK) {
            if let Ok(Some(status)) = ingest.child.try_wait() {
                panic!("lumen-ingest exited with {status}");
            }
            assert!(Instant::now() < deadline, "lumen-ingest not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ingest
    }

    /// Its memory now and at its peak, and the CPU time it used so far.
    pub fn usage(&self) -> Usage {
        let pid = self.child.id();
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_default()
        };
        Usage {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
            cpu: cpu_time(pid),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hyper server that answers every request 204 and does nothing else.
pub struct BareHyper {
    /// Where it listens.
    pub addr: SocketAddr,
    runtime: Option<Runtime>,
}

/// Name of the bare server's threads, by which its CPU time is told apart
/// from the load generator's in this process.
const BARE_THREAD: &str = "bare-hyper";

impl BareHyper {
    /// Binds a loopback port and serves on a runtime of its own.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(BARE_THREAD)
            .build()
            .expect("runtime");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("non-blocking");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = hyper::service::service_fn(|_request| async {
                    let mut response = Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(response)
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self {
            addr,
            runtime: Some(runtime),
        }
    }
}

impl BareHyper {
    /// CPU time its threads used so far.
    pub fn cpu(&self) -> Duration {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| task.ok())
            .map(|task| format!("self/task/{}", task.file_name().to_string_lossy()))
            .filter(|entry| {
                std::fs::read_to_string(format!("/proc/{entry}/comm"))
                    .is_ok_and(|name| name.trim_end() == BARE_THREAD)
            })
            .map(cpu_time)
            .sum()
    }
}

impl Drop for BareHyper {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropped from async code, where a blocking shutdown would panic.
            runtime.shutdown_background();
        }
    }
}
