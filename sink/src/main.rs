//! `lumen-sink`: parse flags, set up logging, run until SIGTERM (or apply the
//! migrations and exit with `lumen-sink migrate`).

use clap::Parser;
use lumen_runtime::{Shutdown, telemetry};
use lumen_sink::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log);
    lumen_sink::run(config, Shutdown::on_signals()).await?;
    Ok(())
}
