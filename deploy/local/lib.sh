# shellcheck shell=bash
# Shared helpers for deploy/local/*.sh. Source it, do not run it.
#
# Sets LUMEN_LOCAL_DIR (this folder), LUMEN_REPO_ROOT, LUMEN_STATE_DIR (env,
# default <repo>/.lumen) and LUMEN_INSTALL_DIR (env, default <repo>/.lumen).
# Callers set LUMEN_LOG_TAG.

LUMEN_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LUMEN_REPO_ROOT=$(cd "$LUMEN_LOCAL_DIR/../.." && pwd)
LUMEN_STATE_DIR=${LUMEN_STATE_DIR:-$LUMEN_REPO_ROOT/.lumen}
# Installed software (Kafka jars, ClickHouse venv) lives apart from the state
# (data, logs, pids), so that a second instance with its own LUMEN_STATE_DIR and
# ports reuses the installs of the first.
LUMEN_INSTALL_DIR=${LUMEN_INSTALL_DIR:-$LUMEN_REPO_ROOT/.lumen}
LUMEN_LOG_TAG=${LUMEN_LOG_TAG:-lumen}
export LUMEN_STATE_DIR LUMEN_INSTALL_DIR

# ------------------------------------------------------------------ messages

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$LUMEN_LOG_TAG" "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
    log "ERROR: $*"
    exit 1
}

# Prints the last N (default 40) lines of FILE, indented, to stderr.
show_tail() {
    local file=$1 lines=${2:-40}
    if [[ -s $file ]]; then
        log "last $lines lines of $file:"
        tail -n "$lines" "$file" | sed 's/^/    | /' >&2
    else
        log "($file is empty or missing)"
    fi
}

# ------------------------------------------------------------------ timing

# Microseconds since the epoch (bash 5's EPOCHREALTIME, no fork).
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s\n' "$((10#$t))"
}

# elapsed START_US -> "6.2s"
elapsed() {
    local d=$(($(now_us) - $1))
    printf '%d.%ds\n' "$((d / 1000000))" "$((d % 1000000 / 100000))"
}

# wait_for DESCRIPTION TIMEOUT_S PID COMMAND...
# Runs COMMAND every 0.2 s until it succeeds (return 0) or TIMEOUT_S passes
# (return 1). If PID is not empty and that process dies, gives up at once
# (return 2).
wait_for() {
    local what=$1 timeout=$2 pid=$3
    shift 3
    local deadline=$(($(now_us) + timeout * 1000000))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [[ -n $pid ]] && ! pid_alive "$pid"; then
            log "$what: process $pid exited"
            return 2
        fi
        if (($(now_us) >= deadline)); then
            log "$what: not ready after ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}

# ------------------------------------------------------------------ processes

# pid_matches PID PATTERN: PID is alive and its command line contains PATTERN
# (guards against a stale PID file whose number was reused by another process).
pid_matches() {
    local pid=$1 pattern=$2 cmdline
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$pattern"* ]]
}

# running_pid PIDFILE PATTERN: prints the PID recorded in PIDFILE if that
# process is alive and matches PATTERN; else removes a stale PIDFILE, returns 1.
running_pid() {
    local pidfile=$1 pattern=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    if pid_matches "$pid" "$pattern"; then
        printf '%s\n' "$pid"
        return 0
    fi
    rm -f "$pidfile"
    return 1
}

# start_detached OUTFILE COMMAND...: starts COMMAND in its own session (so it
# survives the calling shell and its Ctrl-C), stdin from /dev/null, stdout and
# stderr appended to OUTFILE, no lock descriptors. Sets STARTED_PID.
# shellcheck disable=SC2034  # read by the sourcing script
STARTED_PID=
start_detached() {
    local out=$1
    shift
    printf '\n===== %s: %s\n' "$(date '+%F %T')" "$*" >>"$out"
    # 8>&- 9>&-: the lock descriptors of up.sh/down.sh and ensure_apt_packages must
    # not be inherited, or the long-lived server would hold their flocks forever.
    nohup setsid "$@" </dev/null >>"$out" 2>&1 8>&- 9>&- &
    # shellcheck disable=SC2034
    STARTED_PID=$!
}

# stop_pid PID NAME GRACE_S: SIGTERM, wait up to GRACE_S, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 grace=${3:-30} t0
    t0=$(now_us)
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if wait_for "$name to exit after SIGTERM" "$grace" "" pid_gone "$pid"; then
        log "$name (pid $pid) stopped in $(elapsed "$t0")"
        return 0
    fi
    warn "$name (pid $pid) still running after ${grace}s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for "$name to exit after SIGKILL" 10 "" pid_gone "$pid" || die "could not kill $name (pid $pid)"
}

# pid_alive PID: the process exists and is not a zombie (an exited child that
# its parent, often PID 1 after a detached start, has not reaped yet).
pid_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

pid_gone() { ! pid_alive "$1"; }

# ------------------------------------------------------------------ ports

# port_listening PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_listening() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
    else
        timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
    fi
}

# Who listens on PORT (for error messages).
port_owner() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$port" 2>/dev/null | sed 's/^/    /'
    fi
}

# require_port_free PORT WHAT: dies with a clear message if PORT is taken.
require_port_free() {
    local port=$1 what=$2
    if port_listening "$port"; then
        log "ERROR: port $port ($what) is already in use by another process:"
        port_owner "$port" >&2
        die "free port $port or choose another one (see the LUMEN_*_PORT variables)"
    fi
}

# ------------------------------------------------------------------ installs

# ensure_apt_packages PKG...: installs the Debian packages that are missing.
# Non-interactive; `apt-get update` runs at most once (per 6 hours, across
# parallel callers: serialised with flock).
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root (or sudo)"
        sudo=(sudo -n)
    fi
    mkdir -p "$LUMEN_STATE_DIR"
    (
        flock 9
        local stamp=$LUMEN_STATE_DIR/.apt-updated
        if [[ -z $(find "$stamp" -mmin -360 2>/dev/null) ]]; then
            log "apt-get update (once)..."
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq </dev/null ||
                die "apt-get update failed"
            touch "$stamp"
        fi
        log "apt-get install ${missing[*]}..."
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" </dev/null >"$LUMEN_STATE_DIR/.apt-install.log" 2>&1 || {
            show_tail "$LUMEN_STATE_DIR/.apt-install.log" 20
            die "apt-get install ${missing[*]} failed"
        }
    ) 9>"$LUMEN_STATE_DIR/.apt.lock" || die "could not install ${missing[*]}"
}

# ensure_commands CMD:PKG...: installs PKG (apt) for each CMD not on PATH.
ensure_commands() {
    local pair pkgs=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || pkgs+=("${pair#*:}")
    done
    ((${#pkgs[@]})) || return 0
    ensure_apt_packages "${pkgs[@]}"
}

# file_hash FILE...: one short hash over the contents of FILEs (install markers).
file_hash() {
    cat "$@" | sha256sum | cut -c1-16
}

# ------------------------------------------------------------------ commands

# status exit code, as in LSB init scripts: 0 running, 3 stopped.
# shellcheck disable=SC2034  # used by the sourcing scripts
STATUS_RUNNING=0 STATUS_STOPPED=3
