//! End-to-end tests: the three built binaries against real Kafka and
//! ClickHouse, fed by the traffic generator, watched by a real Prometheus.
//! Built only with `--features integration`; `make test` starts the
//! infrastructure and builds the binaries first.
//!
//! The tests take turns (one pipeline at a time): some of them restart the
//! shared Kafka and ClickHouse.
#![cfg(feature = "integration")]

mod counts;
mod faults;
mod harness;
mod observe;
mod pipeline;

/// Held for a whole test: one pipeline at a time on the shared infrastructure.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}
