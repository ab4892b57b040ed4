//! `lumen-enrich`: parse flags, set up logging, run until SIGTERM.

use clap::Parser;
use lumen_enrich::Config;
use lumen_runtime::{Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log);
    lumen_enrich::run(config, Shutdown::on_signals()).await
}
