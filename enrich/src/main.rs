//! `lumen-enrich`: parse flags, set up logging, run until SIGTERM; or
//! `lumen-enrich explain` on stdin/stdout.

use std::fs::File;
use std::io::{BufReader, stdin, stdout};

use anyhow::Context;
use clap::Parser;
use lumen_enrich::classify::Classifier;
use lumen_enrich::config::Command;
use lumen_enrich::enrich::Enricher;
use lumen_enrich::tokens::TokenStore;
use lumen_enrich::{Config, explain};
use lumen_runtime::{Shutdown, telemetry};

// One worker: the consume loop is a single task, and a second worker only
// moved it between threads and gave glibc another malloc arena (`make
// bench-enrich`: peak RSS 152 -> 113 MiB, the same events/s).
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log);
    match &config.command {
        Some(Command::Explain(args)) => {
            let pipeline = &config.pipeline;
            let mut enricher = Enricher::new(
                Classifier::new(
                    &config.classify.article_path_regex,
                    &config.classify.site_article_path_regex,
                )?,
                pipeline.ua_cache_entries,
                TokenStore::new(pipeline.token_ttl_ms(), pipeline.token_store_max_bytes),
            );
            if let Some(path) = &args.shares {
                let file =
                    File::open(path).with_context(|| format!("opening {}", path.display()))?;
                explain::load_shares(&mut enricher, BufReader::new(file))?;
            }
            explain::explain(&mut enricher, stdin().lock(), stdout().lock())?;
            Ok(())
        }
        None => lumen_enrich::run(config, Shutdown::on_signals()).await,
    }
}
