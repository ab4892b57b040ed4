//! Lumen sink: batched, exactly-once writes of `lumen.enriched` into
//! ClickHouse, and the owner of the analysts' model (the migrations in
//! `lumen-schemas`, applied here at start-up and by `lumen-sink migrate`).
//!
//! The data's walk: `consume` (Kafka, rebalances, commits) → `batch`
//! (deterministic per-partition ranges) → `transcode` (Avro → RowBinary
//! rows, with the conventions of `row`) → `insert` (dedup token, retries,
//! split of refused batches) → `dlq` (what never becomes a row).

pub mod batch;
pub mod config;
pub mod consume;
pub mod decode;
pub mod dlq;
pub mod error;
pub mod insert;
pub mod metrics;
pub mod row;
pub mod transcode;

pub use config::{Command, Config};
pub use error::{Error, Result};
use lumen_runtime::{AdminServer, Readiness, Shutdown};

use crate::batch::{Bounds, Held};
use crate::consume::{Delivery, Sink, Subscription};
use crate::decode::Decoder;
use crate::dlq::KafkaDeadLetters;
use crate::insert::{ClickHouseTable, Table, Writer};
use crate::metrics::Metrics;

/// Applies the migrations and the events retention to the configured
/// database; returns the versions applied by this call.
pub async fn migrate(config: &Config) -> Result<Vec<u32>> {
    let clickhouse = &config.clickhouse;
    let client = clickhouse.client();
    let applied = lumen_schemas::migrate::migrate(&client, &clickhouse.database).await?;
    lumen_schemas::migrate::set_retention(
        &client,
        &clickhouse.database,
        clickhouse.events_ttl_days,
    )
    .await?;
    Ok(applied)
}

/// Runs the command of `config`: `migrate`, or the sink until `shutdown`
/// fires (migrating first).
pub async fn run(config: Config, shutdown: Shutdown) -> Result<()> {
    run_with(config, shutdown, ClickHouseTable::new).await
}

/// [`run`], writing through the [`Table`] that `table` makes from the
/// configured client and insert timeout (tests wrap the real table to
/// inject failures at exact points).
pub async fn run_with<T: Table>(
    config: Config,
    shutdown: Shutdown,
    table: impl FnOnce(clickhouse::Client, std::time::Duration) -> T,
) -> Result<()> {
    config.validate()?;
    if config.command == Some(Command::Migrate) {
        let applied = migrate(&config).await?;
        tracing::info!(?applied, database = %config.clickhouse.database, "migrations applied");
        return Ok(());
    }
    let metrics = Metrics::new().map_err(|e| Error::Config(format!("metrics: {e}")))?;
    let readiness = Readiness::new();
    let admin = AdminServer::start(
        config.admin.addr_or(config::DEFAULT_ADMIN_PORT),
        metrics.registry.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    // A fresh database is created here; a sink that cannot reach ClickHouse
    // at start-up fails fast rather than reading records it cannot write.
    migrate(&config).await?;

    let topic = &config.topics.enriched;
    let writer = Writer::new(
        table(config.clickhouse.client(), config.batch.insert_timeout()),
        Decoder::new().map_err(Error::Codec)?,
        topic,
        std::time::Duration::from_millis(config.batch.retry_initial_ms),
        std::time::Duration::from_millis(config.batch.retry_max_ms),
        metrics.clone(),
        readiness.clone(),
    );
    let delivery = Delivery {
        writer,
        dead_letters: KafkaDeadLetters::new(&config.kafka, &config.topics.dlq, topic),
        topic: topic.clone(),
        metrics: metrics.clone(),
    };
    let subscription = Subscription {
        kafka: config.kafka.clone(),
        group: config.consumer_group.clone(),
        topic: topic.clone(),
        metrics,
    };
    let bounds = Bounds {
        max_rows: config.batch.max_rows,
        max_bytes: config.batch.max_bytes,
        max_age: config.batch.max_age(),
    };
    let sink = Sink::new(
        delivery,
        subscription,
        bounds,
        Held {
            records: config.batch.max_buffered_rows,
            bytes: config.batch.max_buffered_bytes,
        },
        config.dedupe_window_events,
    )?;
    readiness.set(true);
    tracing::info!(%topic, group = %config.consumer_group, admin = %admin.local_addr, "sink running");
    sink.run(shutdown.clone(), config.batch.shutdown_timeout())
        .await;
    readiness.set(false);
    shutdown.trigger();
    admin
        .task
        .await
        .map_err(|e| Error::Admin(std::io::Error::other(e)))??;
    Ok(())
}
