#!/usr/bin/env bash
# The tracker's whole test suite, as `make test` runs it once Kafka is up:
# installs what it needs (npm packages, Debian's chromium), builds t.js (with its
# size budget) and lumen-ingest, then runs the Node unit tests and the real-
# Chromium tests against lumen-ingest and Kafka. Exits non-zero on any failure.
#
#   tracker/test/run.sh
#
# Environment: LUMEN_KAFKA_BROKERS [127.0.0.1:9092], LUMEN_CHROMIUM [/usr/bin/chromium],
# LUMEN_INGEST_BIN [target/debug/lumen-ingest, built here when left unset].
set -euo pipefail

TRACKER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$TRACKER_DIR/.." && pwd)
BROKERS=${LUMEN_KAFKA_BROKERS:-127.0.0.1:9092}
CHROMIUM=${LUMEN_CHROMIUM:-/usr/bin/chromium}

log() { printf '[tracker] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

cd "$TRACKER_DIR"

# npm ci only when package-lock.json changed since the last install: it
# deletes node_modules every time, which is slow for nothing.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.lumen-lock-sha256
if [[ ! -f $stamp || $(<"$stamp") != "$lock_hash" ]]; then
    log "installing npm packages (npm ci)..."
    npm ci --no-audit --no-fund --loglevel=error
    printf '%s\n' "$lock_hash" >"$stamp"
fi

if [[ ! -x $CHROMIUM ]]; then
    [[ $CHROMIUM == /usr/bin/chromium ]] || die "LUMEN_CHROMIUM=$CHROMIUM is not an executable"
    log "installing Debian's chromium..."
    sudo=()
    ((EUID == 0)) || sudo=(sudo -n)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi

log "building t.js..."
npm run --silent build

if [[ -z ${LUMEN_INGEST_BIN:-} ]]; then
    log "building lumen-ingest..."
    (cd "$REPO_ROOT" && cargo build --quiet -p lumen-ingest)
fi

# The browser tests need Kafka: say so plainly instead of timing out in a test.
first_broker=${BROKERS%%,*}
if ! (exec 3<>"/dev/tcp/${first_broker%:*}/${first_broker##*:}") 2>/dev/null; then
    die "Kafka is not reachable at $first_broker (start it with deploy/local/kafka.sh start, or set LUMEN_KAFKA_BROKERS)"
fi

log "running the unit and browser tests..."
# One at a time: the browser tests share one ingest and one topic per file, and
# the machine has two cores.
exec node --test --test-concurrency=1 --test-timeout=300000 test/unit/ test/browser/
