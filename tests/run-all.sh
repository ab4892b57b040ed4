#!/usr/bin/env bash
# `make test`: formatting, lints, unit and integration tests of every crate,
# the tracker in real Chromium, the deployment files, and the end-to-end
# tests. Starts Kafka and ClickHouse when they are not running, and stops on
# exit only what it started itself.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n\033[1m== %s\033[0m (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

started=()
stop_started() {
    local status=$?
    stop_orphans
    for service in "${started[@]}"; do
        deploy/local/"$service".sh stop || true
    done
    exit "$status"
}

# A test process killed before its end (a timeout, ^C) leaves what it
# spawned running. Tests start this checkout's service binaries by absolute
# path (`make demo` starts them by relative path) and the end-to-end tests'
# Prometheus with its configuration under .lumen/e2e.
stop_orphans() {
    local target=${CARGO_TARGET_DIR:-$PWD/target}
    pkill -f "^$target/debug/lumen-(ingest|enrich|sink)( |$)" || true
    pkill -f -- "--config.file=$PWD/.lumen/e2e/" || true
}
trap stop_started EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "infrastructure (Kafka, ClickHouse)"
for service in kafka clickhouse; do
    if [[ -z $(deploy/local/"$service".sh pid) ]]; then
        started+=("$service")
    fi
done
deploy/local/up.sh

# Strict: every metric a rule or dashboard uses must exist in the code. Also
# installs promtool's package, whose prometheus binary the end-to-end
# tests run as a real scraper.
step "deployment files (Prometheus rules, dashboards, compose, Kubernetes)"
LUMEN_DEPLOY_STRICT=1 deploy/check.sh

# Building the test targets also builds the three binaries (each crate has
# integration tests), with the features the end-to-end tests then run.
step "unit, integration and end-to-end tests (real Kafka and ClickHouse)"
cargo test --workspace --all-features --locked -- --test-threads 2

if [[ -x tracker/test/run.sh ]]; then
    step "tracker in real Chromium"
    LUMEN_INGEST_BIN=$PWD/target/debug/lumen-ingest tracker/test/run.sh
fi

step "all tests passed"
