#!/usr/bin/env bash
# Stops what deploy/local/up.sh started (listed in $LUMEN_STATE_DIR/started-by-up),
# and nothing else: a Kafka or ClickHouse that was running before up.sh is left
# running. Data stays in $LUMEN_STATE_DIR.
#
#   deploy/local/down.sh          stop what up.sh started
#   deploy/local/down.sh --all    stop Kafka and ClickHouse whoever started them
set -euo pipefail

LUMEN_LOG_TAG=down
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECORD=$LUMEN_STATE_DIR/started-by-up
all=false
case ${1:-} in
    --all) all=true ;;
    "") ;;
    *)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
svc() { "$LUMEN_LOCAL_DIR/$1.sh" "${@:2}"; }

mkdir -p "$LUMEN_STATE_DIR"
exec 8>"$LUMEN_STATE_DIR/.up.lock"
flock -w 600 8 || die "another up.sh/down.sh holds $LUMEN_STATE_DIR/.up.lock"

t0=$(now_us)
declare -A recorded=()
if [[ -f $RECORD ]]; then
    while read -r name pid; do
        [[ $name == kafka || $name == clickhouse ]] && recorded[$name]=$pid
    done <"$RECORD"
fi

stopped=()
for s in clickhouse kafka; do
    current=$(svc "$s" pid)
    if [[ -z $current ]]; then
        [[ -n ${recorded[$s]:-} ]] && log "$s: already stopped"
    elif $all || [[ ${recorded[$s]:-} == "$current" ]]; then
        svc "$s" stop
        stopped+=("$s")
    elif [[ -n ${recorded[$s]:-} ]]; then
        log "$s: leaving pid $current running (up.sh started pid ${recorded[$s]}, which is gone)"
    else
        log "$s: leaving it running (pid $current): not started by up.sh (down.sh --all stops it)"
    fi
done
rm -f "$RECORD"
log "down in $(elapsed "$t0"): stopped ${stopped[*]:-nothing}"
