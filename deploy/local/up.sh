#!/usr/bin/env bash
# Brings up the local infrastructure of Lumen: Apache Kafka (KRaft, with the
# lumen.* topics) and ClickHouse. Idempotent: installs only what is missing or
# outdated, starts only what is not running.
#
#   deploy/local/up.sh [kafka] [clickhouse]     (default: both)
#
# Records in $LUMEN_STATE_DIR/started-by-up what it started (service and pid), so
# that deploy/local/down.sh stops only that and leaves alone what was already
# running before. Settings: see the headers of kafka.sh and clickhouse.sh.
set -euo pipefail

LUMEN_LOG_TAG=up
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECORD=$LUMEN_STATE_DIR/started-by-up
services=("$@")
((${#services[@]})) || services=(kafka clickhouse)
for s in "${services[@]}"; do
    [[ $s == kafka || $s == clickhouse ]] || die "unknown service '$s' (kafka, clickhouse)"
done
svc() { "$LUMEN_LOCAL_DIR/$1.sh" "${@:2}"; }

mkdir -p "$LUMEN_STATE_DIR"
exec 8>"$LUMEN_STATE_DIR/.up.lock"
flock -w 600 8 || die "another up.sh/down.sh holds $LUMEN_STATE_DIR/.up.lock"

t0=$(now_us)

# 1. Install, in parallel (mvn and pip); each skips at once when current.
pids=()
for s in "${services[@]}"; do
    svc "$s" install &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
((failed == 0)) || die "install failed (see above)"

# 2. Start what is not running, in parallel; remember who was running before.
declare -A before=() after=()
for s in "${services[@]}"; do before[$s]=$(svc "$s" pid); done
pids=()
for s in "${services[@]}"; do
    svc "$s" start &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
for s in "${services[@]}"; do after[$s]=$(svc "$s" pid); done

# 3. Record what this run started, keeping the entries of earlier runs whose
#    process still runs (up.sh; up.sh; down.sh stops what the first one started).
started=() already=()
{
    if [[ -f $RECORD ]]; then
        while read -r name pid; do
            [[ ${name:-} == kafka || ${name:-} == clickhouse ]] || continue
            [[ $(svc "$name" pid) == "$pid" ]] && printf '%s %s\n' "$name" "$pid"
        done <"$RECORD"
    fi
    for s in "${services[@]}"; do
        if [[ -z ${before[$s]} && -n ${after[$s]} ]]; then
            printf '%s %s\n' "$s" "${after[$s]}"
        fi
    done
} | sort -u >"$RECORD.tmp"
mv "$RECORD.tmp" "$RECORD"
[[ -s $RECORD ]] || rm -f "$RECORD"
for s in "${services[@]}"; do
    if [[ -z ${before[$s]} && -n ${after[$s]} ]]; then started+=("$s"); elif [[ -n ${before[$s]} ]]; then already+=("$s"); fi
done

((failed == 0)) || die "start failed (see above); started so far: ${started[*]:-nothing}"
log "up in $(elapsed "$t0"): started ${started[*]:-nothing}; already running: ${already[*]:-nothing}"
for s in "${services[@]}"; do
    case $s in
        kafka) log "  LUMEN_KAFKA_BROKERS=127.0.0.1:${LUMEN_KAFKA_PORT:-9092}" ;;
        clickhouse) log "  LUMEN_CLICKHOUSE_URL=http://127.0.0.1:${LUMEN_CLICKHOUSE_HTTP_PORT:-8123}" ;;
    esac
done
