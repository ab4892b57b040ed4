//! Lumen ingest: the beacon collector: HTTP beacons in, Avro records on
//! `lumen.raw` out.
//!
//! The request's walk: `server` (connections, timeouts) → `routes` (API,
//! CORS) → `decode` (limits, gzip, JSON) → `validate` (fields, site
//! hostnames, server-side fields, with `privacy` for the visitor id) →
//! `produce` (Kafka, acknowledged before the answer). `sites`, `tracker`,
//! `metrics` and `config` serve them.

pub mod config;
pub mod decode;
pub mod error;
pub mod metrics;
pub mod privacy;
pub mod produce;
pub mod renew;
pub mod routes;
pub mod server;
pub mod sites;
pub mod tracker;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use error::{Error, Result};
use lumen_runtime::kafka::{HealthWatch, KAFKA_LOST_AFTER};
use lumen_runtime::{AdminServer, Readiness, Shutdown};
use lumen_schemas::Codec;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::privacy::VisitorHasher;
use crate::produce::{KafkaProducer, Producer};
use crate::renew::RenewableProducer;
use crate::routes::AppState;
use crate::server::{PublicServer, ServerLimits};
use crate::sites::Sites;
use crate::tracker::TrackerScript;

/// Longest single metadata fetch of the readiness probe.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// A started service: its bound addresses, and the tasks to wait for.
pub struct Running {
    /// Where beacons are accepted (the bound port when configured with 0).
    pub public_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub admin_addr: SocketAddr,
    public: JoinHandle<()>,
    admin: JoinHandle<std::io::Result<()>>,
    readiness: JoinHandle<()>,
    producer: Arc<RenewableProducer<KafkaProducer>>,
    flush_timeout: Duration,
}

/// Runs the service until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

/// Validates the config, loads the sites and tracker files, connects the
/// producer and starts both listeners.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running> {
    config.validate()?;
    if config.privacy.visitor_secret.is_none() {
        tracing::warn!(
            "--insecure-dev-visitor-secret: visitor ids use a publicly known secret; never use this in production"
        );
    }
    let secret = config.privacy.secret()?;
    let sites_file = config
        .privacy
        .sites_file
        .as_deref()
        .ok_or_else(|| Error::Config("set --sites-file".into()))?;
    let sites = Sites::load(sites_file)?;
    tracing::info!(sites = sites.len(), path = %sites_file.display(), "sites loaded");

    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let producer = Arc::new(RenewableProducer::new(KafkaProducer::new(
        &config.kafka,
        &config.producer,
        &config.topics.raw,
    )?));
    let state = Arc::new(AppState {
        producer: producer.clone(),
        codec: Codec::new()?,
        sites,
        hasher: VisitorHasher::new(secret),
        tracker: TrackerScript::load(&config.http.tracker_file),
        metrics: metrics.clone(),
        limits: config.limits.clone(),
        trusted_proxies: config.privacy.trusted_proxies.clone(),
        body_timeout: config.http.body_timeout(),
        retry_after_seconds: config.producer.retry_after_seconds,
    });

    let readiness = Readiness::new();
    let admin = AdminServer::start(
        config.admin.addr_or(config::DEFAULT_ADMIN_PORT),
        registry,
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    let public = PublicServer::start(
        config.http.listen_addr,
        routes::Public::new(state),
        ServerLimits {
            header_read: Duration::from_millis(config.http.header_timeout_ms),
            drain: Duration::from_millis(config.http.drain_timeout_ms),
            max_connections: config.http.max_connections,
        },
        shutdown.clone(),
    )
    .await?;
    let readiness = tokio::spawn(watch_kafka(
        producer.clone(),
        config.clone(),
        readiness,
        metrics,
        shutdown,
    ));
    Ok(Running {
        public_addr: public.local_addr,
        admin_addr: admin.local_addr,
        public: public.task,
        admin: admin.task,
        readiness,
        producer,
        flush_timeout: Duration::from_millis(config.producer.flush_timeout_ms),
    })
}

impl Running {
    /// Waits for shutdown: the public server drains in-flight requests, then
    /// the producer flushes whatever is still queued.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.public.await?;
        self.readiness.await?;
        let producer = self.producer.current();
        let timeout = self.flush_timeout;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await?;
        if let Err(error) = flushed {
            tracing::error!(%error, "producer flush incomplete at shutdown");
        }
        self.admin.await??;
        tracing::info!("ingest stopped");
        Ok(())
    }
}

/// Ready while Kafka metadata for the raw topic can be fetched; replaces
/// the producer when it has not been for too long (see [`renew`]); also
/// samples the producer queue depth.
async fn watch_kafka(
    producer: Arc<RenewableProducer<KafkaProducer>>,
    config: Config,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    let interval = Duration::from_millis(config.producer.readiness_interval_ms);
    let mut ticker = tokio::time::interval(interval);
    let health = HealthWatch::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => break,
        }
        let probe = producer.current();
        let timeout = interval.min(METADATA_TIMEOUT);
        let reachable = tokio::task::spawn_blocking(move || probe.check_metadata(timeout)).await;
        let ready = matches!(reachable, Ok(Ok(())));
        if ready != readiness.is_ready() {
            match &reachable {
                Ok(Err(error)) => tracing::warn!(%error, "Kafka unreachable: not ready"),
                Err(error) => tracing::warn!(%error, "readiness probe failed: not ready"),
                Ok(Ok(())) => tracing::info!("Kafka reachable: ready"),
            }
        }
        readiness.set(ready);
        metrics
            .producer_queue
            .set(i64::try_from(producer.queue_depth()).unwrap_or(i64::MAX));
        health.observe(ready);
        if health.lost() {
            renew_producer(&producer, &config, &metrics);
            health.restart();
        }
    }
    readiness.set(false);
}

/// Puts a new producer in place of one that has not reached Kafka for
/// [`KAFKA_LOST_AFTER`]. The old one is dropped on a blocking
/// thread, or by the last request still waiting on it (its records have
/// timed out by then, so its queue is empty and the drop is short).
fn renew_producer(producer: &RenewableProducer<KafkaProducer>, config: &Config, metrics: &Metrics) {
    match KafkaProducer::new(&config.kafka, &config.producer, &config.topics.raw) {
        Ok(fresh) => {
            tracing::error!(
                after = ?KAFKA_LOST_AFTER,
                "Kafka unreachable for too long; replacing the producer"
            );
            metrics.producer_replacements.inc();
            let old = producer.replace(fresh);
            tokio::task::spawn_blocking(move || drop(old));
        }
        Err(error) => tracing::warn!(%error, "cannot create a new producer"),
    }
}
