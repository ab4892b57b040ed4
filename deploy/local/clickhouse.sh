#!/usr/bin/env bash
# ClickHouse 26.9 for local development, from the PyPI wheel chdb-core (a full
# ClickHouse engine) run as a server by deploy/local/clickhouse_server.py.
# Debian's clickhouse-server package is 18.16 (2018): too old for the clickhouse crate.
#
#   deploy/local/clickhouse.sh install   venv $LUMEN_INSTALL_DIR/venv-clickhouse with chdb-core (skipped when current)
#   deploy/local/clickhouse.sh start     install if needed, start, wait for /ping
#   deploy/local/clickhouse.sh stop      stop line to the fifo, then SIGTERM, then SIGKILL
#   deploy/local/clickhouse.sh restart
#   deploy/local/clickhouse.sh status    exit 0 running, 3 stopped
#   deploy/local/clickhouse.sh pid       print the server's pid (nothing if stopped)
#   deploy/local/clickhouse.sh query SQL run SQL over HTTP (SQL from stdin when not given)
#   deploy/local/clickhouse.sh log       follow the server log
#
# Environment (defaults in brackets):
#   LUMEN_STATE_DIR               [<repo>/.lumen]  data, log, pid in $LUMEN_STATE_DIR/clickhouse
#   LUMEN_INSTALL_DIR             [<repo>/.lumen]  venv in $LUMEN_INSTALL_DIR/venv-clickhouse
#   LUMEN_CLICKHOUSE_HTTP_PORT    [8123]
#   LUMEN_CLICKHOUSE_TCP_PORT     [9000]  native protocol
#   LUMEN_CLICKHOUSE_CHDB_VERSION [26.9.0] chdb-core version (its entry point is private: keep pinned)
#   LUMEN_CLICKHOUSE_START_TIMEOUT [30]   seconds to wait for /ping
#   LUMEN_PYTHON                  [python3] interpreter for the venv
set -euo pipefail

LUMEN_LOG_TAG=clickhouse
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHDB_VERSION=${LUMEN_CLICKHOUSE_CHDB_VERSION:-26.9.0}
HTTP_PORT=${LUMEN_CLICKHOUSE_HTTP_PORT:-8123}
TCP_PORT=${LUMEN_CLICKHOUSE_TCP_PORT:-9000}
START_TIMEOUT=${LUMEN_CLICKHOUSE_START_TIMEOUT:-30}
PYTHON=${LUMEN_PYTHON:-python3}
HTTP_URL=http://127.0.0.1:$HTTP_PORT

VENV=$LUMEN_INSTALL_DIR/venv-clickhouse
CH_HOME=$LUMEN_STATE_DIR/clickhouse
PIDFILE=$CH_HOME/clickhouse.pid
LOG=$CH_HOME/clickhouse.log
FIFO=$CH_HOME/stop.fifo
SERVER_PY=$LUMEN_LOCAL_DIR/clickhouse_server.py

[[ $HTTP_PORT =~ ^[0-9]+$ && $TCP_PORT =~ ^[0-9]+$ ]] || die "LUMEN_CLICKHOUSE_HTTP_PORT / LUMEN_CLICKHOUSE_TCP_PORT must be numbers"

# The server's command line contains this, so a stale PID file cannot match another process.
PID_PATTERN="clickhouse_server.py --base $CH_HOME "

# ------------------------------------------------------------------ install

installed_version() {
    [[ -x $VENV/bin/python ]] || return 1
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null
}

cmd_install() {
    local have
    have=$(installed_version) || true
    if [[ $have == "$CHDB_VERSION" ]]; then
        log "chdb-core $CHDB_VERSION (ClickHouse ${CHDB_VERSION%.*}) already installed ($VENV)"
        return 0
    fi
    if running_pid "$PIDFILE" "$PID_PATTERN" >/dev/null; then
        die "ClickHouse is running from $VENV: stop it first (deploy/local/clickhouse.sh stop), then install"
    fi
    local t0
    t0=$(now_us)
    ensure_commands "$PYTHON:python3" curl:curl
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        ensure_apt_packages python3-venv
    fi
    if [[ -z $have ]]; then
        rm -rf "$VENV" # missing or broken (e.g. its interpreter is gone)
        log "creating venv $VENV..."
        "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv $VENV failed"
    fi
    mkdir -p "$LUMEN_INSTALL_DIR"
    log "installing ClickHouse ${CHDB_VERSION%.*} from PyPI (pip install --no-deps chdb-core==$CHDB_VERSION)..."
    # --no-deps: the server needs none of chdb's numpy/pandas/pyarrow.
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input --no-deps \
        "chdb-core==$CHDB_VERSION" >"$LUMEN_INSTALL_DIR/clickhouse-install.log" 2>&1; then
        show_tail "$LUMEN_INSTALL_DIR/clickhouse-install.log" 30
        die "pip could not install chdb-core==$CHDB_VERSION (see $LUMEN_INSTALL_DIR/clickhouse-install.log)"
    fi
    have=$(installed_version) || die "chdb-core not importable after pip install"
    [[ $have == "$CHDB_VERSION" ]] || die "pip installed chdb-core $have, wanted $CHDB_VERSION"
    log "chdb-core $CHDB_VERSION installed in $(elapsed "$t0")"
}

# ------------------------------------------------------------------ helpers

ping() {
    curl -sf --max-time 1 "$HTTP_URL/ping" >/dev/null
}

# query SQL: runs SQL over HTTP, prints the answer (TabSeparated by default).
http_query() {
    curl -sS --fail-with-body --max-time "${LUMEN_CLICKHOUSE_QUERY_TIMEOUT:-60}" \
        --data-binary @- "$HTTP_URL/" <<<"$1"
}

# ------------------------------------------------------------------ commands

cmd_start() {
    local pid
    if pid=$(running_pid "$PIDFILE" "$PID_PATTERN"); then
        log "ClickHouse already running (pid $pid) on $HTTP_URL"
        wait_for "ClickHouse /ping" "$START_TIMEOUT" "$pid" ping || {
            show_tail "$LOG"
            die "ClickHouse (pid $pid) is running but $HTTP_URL/ping does not answer"
        }
        return 0
    fi
    [[ $(installed_version || true) == "$CHDB_VERSION" ]] || cmd_install
    command -v curl >/dev/null 2>&1 || ensure_commands curl:curl
    require_port_free "$HTTP_PORT" "ClickHouse HTTP, LUMEN_CLICKHOUSE_HTTP_PORT"
    require_port_free "$TCP_PORT" "ClickHouse native TCP, LUMEN_CLICKHOUSE_TCP_PORT"
    mkdir -p "$CH_HOME"

    log "starting ClickHouse on $HTTP_URL (native 127.0.0.1:$TCP_PORT, data $CH_HOME/data)..."
    local t0
    t0=$(now_us)
    start_detached "$LOG" "$VENV/bin/python" -u "$SERVER_PY" --base "$CH_HOME" \
        --http-port "$HTTP_PORT" --tcp-port "$TCP_PORT"
    pid=$STARTED_PID
    echo "$pid" >"$PIDFILE"

    local rc=0
    wait_for "ClickHouse /ping" "$START_TIMEOUT" "$pid" ping || rc=$?
    if ((rc == 0)); then
        wait_for "ClickHouse native port $TCP_PORT" 10 "$pid" port_listening "$TCP_PORT" || rc=$?
    fi
    if ((rc != 0)); then
        show_tail "$LOG" 40
        if pid_alive "$pid"; then
            stop_pid "$pid" ClickHouse 10 || true
        fi
        rm -f "$PIDFILE"
        die "ClickHouse did not become ready (log: $LOG)"
    fi
    local version
    version=$(http_query 'SELECT version()' 2>/dev/null) || version='?'
    log "ClickHouse $version ready on $HTTP_URL (native 127.0.0.1:$TCP_PORT) in $(elapsed "$t0") (pid $pid, log $LOG)"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid "$PIDFILE" "$PID_PATTERN"); then
        log "ClickHouse is not running"
        return 0
    fi
    log "stopping ClickHouse (pid $pid)..."
    local t0
    t0=$(now_us)
    # 1. The stop line: ends the blocking query, ClickHouse shuts down cleanly. The
    #    open() of a fifo blocks while nobody reads it, hence the timeout.
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    if [[ -p $FIFO ]] && timeout 3 bash -c 'echo stop >"$1"' _ "$FIFO" 2>/dev/null &&
        wait_for "ClickHouse to exit" 30 "" pid_gone "$pid"; then
        log "ClickHouse (pid $pid) stopped in $(elapsed "$t0")"
    else
        # 2. SIGTERM (clickhouse_server.py turns it into the same stop line), 3. SIGKILL.
        stop_pid "$pid" ClickHouse 20
    fi
    rm -f "$PIDFILE"
}

cmd_status() {
    local pid
    if pid=$(running_pid "$PIDFILE" "$PID_PATTERN"); then
        if ping; then
            echo "ClickHouse $(http_query 'SELECT version()' 2>/dev/null || echo '?') running (pid $pid) on $HTTP_URL (native 127.0.0.1:$TCP_PORT), data $CH_HOME/data"
        else
            echo "ClickHouse running (pid $pid) but $HTTP_URL/ping does not answer (yet); log $LOG"
        fi
        return "$STATUS_RUNNING"
    fi
    echo "ClickHouse stopped"
    return "$STATUS_STOPPED"
}

cmd_pid() {
    running_pid "$PIDFILE" "$PID_PATTERN" || true
}

cmd_query() {
    local sql
    if (($#)); then sql="$*"; else sql=$(cat); fi
    http_query "$sql"
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    pid) cmd_pid ;;
    query) shift && cmd_query "$@" ;;
    log) exec tail -F "$LOG" ;;
    *) usage ;;
esac
