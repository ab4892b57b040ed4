//! Lumen enrich: token resolution, channel inference and user-agent parsing:
//! `lumen.raw` in, `lumen.enriched` (and `lumen.shares`, `lumen.dlq`) out,
//! exactly once.
//!
//! The data's walk: `consume` (batches, rebalances, transactions) →
//! `enrich` (one event: `user_agent`, `tokens`, `classify` with the
//! `rules` and `domains` tables) → `produce` (output records, one
//! transaction via `transaction`). `restore` rebuilds a partition's state,
//! `lumen_runtime::dedupe` drops tracker retries, `explain` is the
//! classifier on the command line.

pub mod classify;
pub mod config;
pub mod consume;
pub mod domains;
pub mod enrich;
pub mod error;
pub mod explain;
pub mod metrics;
pub mod produce;
pub mod restore;
pub mod rules;
pub mod tokens;
pub mod transaction;
pub mod user_agent;

use std::net::SocketAddr;
use std::time::Duration;

pub use config::Config;
pub use error::{Error, Result};
use lumen_runtime::{AdminServer, Readiness, Shutdown};
use tokio::task::JoinHandle;

/// Pause before the pipeline starts again after Kafka could not be reached,
/// so an outage does not turn into a loop of new clients.
const RESTART_PAUSE: Duration = Duration::from_secs(5);

/// A service started in the background.
pub struct Running {
    /// The admin server's bound address (useful with port 0).
    pub admin_addr: SocketAddr,
    /// Ends when the service has stopped: after `shutdown` fires and the
    /// last batch is committed, or on a fatal error.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Validates `config`, starts the admin server and the consume loop.
pub async fn start(config: Config, shutdown: Shutdown) -> anyhow::Result<Running> {
    config.validate()?;
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::register(&registry)?;
    let readiness = Readiness::new();
    let admin = AdminServer::start(
        config.admin.addr_or(config::DEFAULT_ADMIN_PORT),
        registry,
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    let admin_addr = admin.local_addr;
    let task = tokio::spawn(async move {
        let result = loop {
            let result = consume::run(
                config.clone(),
                metrics.clone(),
                readiness.clone(),
                shutdown.clone(),
            )
            .await;
            match result {
                Err(error) if error.restarts_pipeline() => {
                    tracing::error!(%error, "starting the pipeline again with new Kafka clients");
                    metrics.consumer_replacements.inc();
                    if !matches!(error, Error::GroupLost { .. }) {
                        tokio::select! {
                            () = tokio::time::sleep(RESTART_PAUSE) => {}
                            () = shutdown.wait() => break Ok(()),
                        }
                    }
                }
                result => break result,
            }
        };
        // A fatal pipeline error stops the admin server too.
        shutdown.trigger();
        admin.task.await??;
        Ok(result?)
    });
    Ok(Running { admin_addr, task })
}

/// Runs the service until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    start(config, shutdown).await?.task.await?
}
