//! `lumen-ingest`: parse flags, set up logging, run until SIGTERM.

use clap::Parser;
use lumen_ingest::Config;
use lumen_runtime::{Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log);
    lumen_ingest::run(config, Shutdown::on_signals()).await
}
