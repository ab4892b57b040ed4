//! Lumen ingest: the beacon collector: HTTP beacons in, Avro records on lumen.raw out.

pub mod config;

pub use config::Config;
use lumen_runtime::{AdminServer, Readiness, Shutdown};

/// Runs the service until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let readiness = Readiness::new();
    let admin = AdminServer::start(
        config.admin.addr_or(config::DEFAULT_ADMIN_PORT),
        registry,
        readiness,
        shutdown.clone(),
    )
    .await?;
    shutdown.wait().await;
    admin.task.await??;
    Ok(())
}
