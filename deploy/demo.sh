#!/usr/bin/env bash
# `make demo`: the whole product on one machine. Starts Kafka and ClickHouse,
# builds and starts lumen-ingest, lumen-enrich and lumen-sink, serves the demo
# publisher site, sends a minute of realistic reader traffic, and prints the
# live dark/public share ratio and top channels from ClickHouse while it runs.
#
#   deploy/demo.sh          run the demo (services stay up afterwards)
#   deploy/demo.sh stop     stop the demo's services and site (then `make down`)
#
# Settings: LUMEN_DEMO_RATE (readers/s, 40), LUMEN_DEMO_SECONDS (60),
# LUMEN_DEMO_SITE_PORT (8000), LUMEN_DEMO_SEED (the clock: the generator's
# event ids follow from the seed, and enrich drops an event id it has seen,
# so a second run with the same seed on the same Kafka would send only
# duplicates).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE=$ROOT/.lumen/demo
RATE=${LUMEN_DEMO_RATE:-40}
SECONDS_OF_TRAFFIC=${LUMEN_DEMO_SECONDS:-60}
SITE_PORT=${LUMEN_DEMO_SITE_PORT:-8000}
SEED=${LUMEN_DEMO_SEED:-$(date +%s)}
CLICKHOUSE=http://127.0.0.1:${LUMEN_CLICKHOUSE_HTTP_PORT:-8123}
SERVICES=(sink enrich ingest)
declare -A ADMIN_PORT=([ingest]=9101 [enrich]=9102 [sink]=9103)

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "[$(date -u +%H:%M:%S)] $*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

stop_demo() {
    local name pid
    for name in ingest enrich sink site traffic; do
        [[ -f $STATE/$name.pid ]] || continue
        pid=$(<"$STATE/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$STATE/$name.pid"
    done
}

if [[ ${1:-} == stop ]]; then
    stop_demo
    echo "Kafka and ClickHouse are still up: \`make down\` stops them."
    exit 0
fi

query() { # SQL -> pretty table on stdout
    curl -sS --fail-with-body "$CLICKHOUSE/" --data-binary "$1 FORMAT PrettyCompactMonoBlock"
}

wait_ready() { # NAME URL LOG
    local deadline=$((SECONDS + 60))
    until curl -sf -o /dev/null "$2"; do
        if ((SECONDS > deadline)); then
            tail -n 30 "$3" >&2 || true
            die "$1 not ready after 60 s (log: $3)"
        fi
        sleep 0.2
    done
}

mkdir -p "$STATE"
stop_demo >/dev/null

step "1/6 Kafka and ClickHouse (installed once under .lumen/, then started)"
deploy/local/up.sh

step "2/6 building lumen-ingest, lumen-enrich, lumen-sink and lumen-traffic (a cold build takes several minutes on 2 cores)"
cargo build --locked -p lumen-ingest -p lumen-enrich -p lumen-sink -p lumen-e2e

step "3/6 building the tracker t.js"
if [[ ! -d tracker/node_modules ]]; then
    (cd tracker && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd tracker && npm run --silent build)

step "4/6 starting the services (logs in .lumen/demo/)"
[[ -f $STATE/visitor-secret ]] || head -c 32 /dev/urandom | base64 >"$STATE/visitor-secret"
export LUMEN_KAFKA_BROKERS=127.0.0.1:${LUMEN_KAFKA_PORT:-9092}
export LUMEN_CLICKHOUSE_URL=$CLICKHOUSE
export LUMEN_VISITOR_SECRET
LUMEN_VISITOR_SECRET=$(<"$STATE/visitor-secret")
export LUMEN_SITES_FILE=$ROOT/ingest/sites.example.json
export LUMEN_TRACKER_FILE=$ROOT/tracker/dist/t.js
export LUMEN_TRUSTED_PROXIES=127.0.0.1/32,::1/128
export LUMEN_LISTEN_ADDR=127.0.0.1:8080
for name in "${SERVICES[@]}"; do
    LUMEN_ADMIN_ADDR=127.0.0.1:${ADMIN_PORT[$name]} nohup "target/debug/lumen-$name" \
        >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
    wait_ready "lumen-$name" "http://127.0.0.1:${ADMIN_PORT[$name]}/readyz" "$STATE/$name.log"
    echo "lumen-$name ready (pid $(<"$STATE/$name.pid"), metrics on http://127.0.0.1:${ADMIN_PORT[$name]}/metrics)"
done

step "5/6 demo publisher site on http://localhost:$SITE_PORT/ (open it: your own visits and shares count too)"
nohup node tracker/demo/serve.js --port "$SITE_PORT" >"$STATE/site.log" 2>&1 </dev/null &
echo $! >"$STATE/site.pid"
wait_ready "demo site" "http://127.0.0.1:$SITE_PORT/" "$STATE/site.log"

started=$(date -u +%s)
step "6/6 $SECONDS_OF_TRAFFIC s of readers at $RATE/s: sharers, WhatsApp/Messenger/Telegram/WeChat/LINE webviews, webmail, search, AI, social, newsletters, bots"
target/debug/lumen-traffic --ingest-url http://127.0.0.1:8080 --site-origin "http://localhost:$SITE_PORT" \
    --rate "$RATE" --duration-secs "$SECONDS_OF_TRAFFIC" --seed "$SEED" \
    --truth-file "$STATE/truth.json" >"$STATE/traffic.out" 2>"$STATE/traffic.log" &
traffic=$!
echo "$traffic" >"$STATE/traffic.pid"

RATIO_SQL="SELECT formatDateTime(bucket, '%H:%i') AS minute, dark_social_visits AS dark, public_social_visits AS public, round(dark_public_ratio, 2) AS dark_per_public
FROM lumen.share_ratio WHERE site_id = 'demo' AND bucket_size = 'minute' AND bucket >= toStartOfMinute(toDateTime($started)) ORDER BY bucket"
CHANNELS_SQL="SELECT channel, if(channel_source = '', '(none)', channel_source) AS source, sum(visits) AS n, round(100 * n / sum(n) OVER (), 1) AS pct
FROM lumen.traffic_per_minute WHERE site_id = 'demo' AND minute >= toStartOfMinute(toDateTime($started))
GROUP BY channel, channel_source HAVING n > 0 ORDER BY n DESC LIMIT 12"
while kill -0 "$traffic" 2>/dev/null; do
    sleep 5
    step "live from ClickHouse: dark vs public social per minute"
    query "$RATIO_SQL" || true
    bold "top channels and sources since the traffic started"
    query "$CHANNELS_SQL" || true
done
wait "$traffic" || die "the traffic generator failed: $(tail -n 3 "$STATE/traffic.log")"
rm -f "$STATE/traffic.pid"

step "ground truth (what the generator sent) vs ClickHouse (what Lumen counted)"
cat "$STATE/traffic.out"
expected=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["events"])' "$STATE/truth.json")
deadline=$((SECONDS + 60))
until (( $(curl -sS "$CLICKHOUSE/" --data-binary "SELECT count() FROM lumen.events WHERE site_id = 'demo' AND received_at >= toDateTime($started)") >= expected )); do
    ((SECONDS < deadline)) || die "ClickHouse has not caught up with the $expected events after 60 s (see $STATE/*.log)"
    sleep 0.5
done
echo "ClickHouse holds all $expected events sent:"
query "SELECT channel, count() AS visits FROM lumen.events WHERE site_id = 'demo' AND kind = 'pageview' AND NOT is_bot AND received_at >= toDateTime($started) GROUP BY channel ORDER BY visits DESC"
query "SELECT countIf(channel = 'dark_social') AS dark, countIf(channel = 'social') AS public, round(dark / public, 2) AS dark_per_public FROM lumen.events WHERE site_id = 'demo' AND kind = 'pageview' AND NOT is_bot AND received_at >= toDateTime($started)"

cat <<EOF_DONE

$(bold "Done. The services keep running.")
  Query further (more in sink/queries.md):
    curl -s $CLICKHOUSE/ --data-binary "SELECT * FROM lumen.share_ratio WHERE bucket_size = 'hour' FORMAT PrettyCompact"
    curl -s $CLICKHOUSE/ --data-binary "SELECT channel_source, count() FROM lumen.events WHERE channel = 'dark_social' GROUP BY 1 ORDER BY 2 DESC FORMAT PrettyCompact"
    curl -s $CLICKHOUSE/ --data-binary "SELECT * FROM lumen.share_visits LIMIT 10 FORMAT Vertical"
    echo '{"site_id":"demo","kind":"pageview","url":"https://x.example/a/b-c","user_agent":"WhatsApp/2.24 A"}' | target/debug/lumen-enrich explain
  Browse http://localhost:$SITE_PORT/, copy a link or press a share button, and watch it arrive.
  Metrics: http://127.0.0.1:9101/metrics (ingest), :9102 (enrich), :9103 (sink)
  Stop:    deploy/demo.sh stop   (the services and the site), then   make down   (Kafka and ClickHouse)
EOF_DONE
