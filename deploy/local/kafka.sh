#!/usr/bin/env bash
# Apache Kafka 4.x for local development: one KRaft node (broker + controller)
# run from jars resolved from Maven Central. No Docker, no downloads besides
# Maven Central (and Debian packages if java/mvn/javac are missing).
#
#   deploy/local/kafka.sh install    resolve the jars into $LUMEN_INSTALL_DIR/kafka/libs (skipped when current)
#   deploy/local/kafka.sh start      install if needed, format storage once, start, wait, create topics
#                                    (when already running: creates the topics once per broker run)
#   deploy/local/kafka.sh stop       SIGTERM (controlled shutdown), SIGKILL after a grace period
#   deploy/local/kafka.sh restart
#   deploy/local/kafka.sh status     exit 0 running, 3 stopped
#   deploy/local/kafka.sh pid        print the broker's pid (nothing if stopped)
#   deploy/local/kafka.sh topics     create/check the lumen.* topics on the running broker
#   deploy/local/kafka.sh selftest   transactional produce/abort + read_committed consume + group commit
#   deploy/local/kafka.sh cli TOOL [ARGS]   run a Kafka tool (topics, console-producer,
#                                    console-consumer, consumer-groups, transactions, configs,
#                                    get-offsets, metadata-quorum, or a class name);
#                                    --bootstrap-server is added when not given
#   deploy/local/kafka.sh log        follow the broker log
#
# Environment (defaults in brackets):
#   LUMEN_STATE_DIR             [<repo>/.lumen]  data, logs, pid in $LUMEN_STATE_DIR/kafka
#   LUMEN_INSTALL_DIR           [<repo>/.lumen]  jars in $LUMEN_INSTALL_DIR/kafka/libs
#   LUMEN_KAFKA_VERSION         [4.4.0]
#   LUMEN_KAFKA_PORT            [9092]  client listener on 127.0.0.1
#   LUMEN_KAFKA_CONTROLLER_PORT [9093]  KRaft controller listener on 127.0.0.1
#   LUMEN_KAFKA_PARTITIONS      [3]     partitions of each lumen.* topic
#   LUMEN_KAFKA_HEAP            [512m]  broker -Xmx
#   LUMEN_KAFKA_START_TIMEOUT   [90]    seconds to wait for readiness
#   LUMEN_KAFKA_EXTRA_CONFIG    []      extra server.properties lines (key=value, newline-separated)
set -euo pipefail

LUMEN_LOG_TAG=kafka
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION=${LUMEN_KAFKA_VERSION:-4.4.0}
KAFKA_PORT=${LUMEN_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${LUMEN_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_PARTITIONS=${LUMEN_KAFKA_PARTITIONS:-3}
KAFKA_HEAP=${LUMEN_KAFKA_HEAP:-512m}
KAFKA_START_TIMEOUT=${LUMEN_KAFKA_START_TIMEOUT:-90}
KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT

SRC_DIR=$LUMEN_LOCAL_DIR/kafka
POM=$SRC_DIR/pom.xml
ADMIN_SRC=$SRC_DIR/LumenKafkaAdmin.java
BROKER_LOG4J=$SRC_DIR/log4j2-broker.properties
TOOLS_LOG4J=$SRC_DIR/log4j2-tools.properties

KAFKA_INSTALL=$LUMEN_INSTALL_DIR/kafka
LIBS=$KAFKA_INSTALL/libs
CLASSES=$KAFKA_INSTALL/classes
MARKER=$KAFKA_INSTALL/installed
KAFKA_HOME=$LUMEN_STATE_DIR/kafka
DATA=$KAFKA_HOME/data
PROPS=$KAFKA_HOME/server.properties
PIDFILE=$KAFKA_HOME/kafka.pid
LOG=$KAFKA_HOME/kafka.log
OUT=$KAFKA_HOME/kafka.out
TOPICS_MARKER=$KAFKA_HOME/topics-ensured

# The topics of docs DESIGN.md ("Kafka topics"). NAME:PARTITIONS[:config=value,...]
TOPICS=(
    "lumen.raw:$KAFKA_PARTITIONS"
    "lumen.enriched:$KAFKA_PARTITIONS"
    "lumen.dlq:$KAFKA_PARTITIONS"
    "lumen.shares:$KAFKA_PARTITIONS:cleanup.policy=compact"
)

[[ $KAFKA_PORT =~ ^[0-9]+$ && $KAFKA_CONTROLLER_PORT =~ ^[0-9]+$ ]] || die "LUMEN_KAFKA_PORT / LUMEN_KAFKA_CONTROLLER_PORT must be numbers"
[[ $KAFKA_PARTITIONS =~ ^[1-9][0-9]*$ ]] || die "LUMEN_KAFKA_PARTITIONS must be a positive number"

# The broker's command line contains this, so a stale PID file cannot match another process.
PID_PATTERN="kafka.Kafka $PROPS"

# ------------------------------------------------------------------ install

install_marker() {
    printf '%s %s\n' "$KAFKA_VERSION" "$(file_hash "$POM" "$ADMIN_SRC")"
}

is_installed() {
    [[ -f $MARKER && -d $CLASSES && $(<"$MARKER") == "$(install_marker)" ]]
}

java_major() {
    java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'
}

cmd_install() {
    if is_installed; then
        log "Kafka $KAFKA_VERSION already installed ($LIBS)"
        return 0
    fi
    if running_pid "$PIDFILE" "$PID_PATTERN" >/dev/null; then
        die "Kafka is running from $LIBS: stop it first (deploy/local/kafka.sh stop), then install $KAFKA_VERSION"
    fi
    local t0
    t0=$(now_us)
    ensure_commands java:openjdk-17-jre-headless javac:openjdk-17-jdk-headless mvn:maven
    local major
    major=$(java_major)
    ((${major:-0} >= 17)) || die "Kafka 4 needs Java 17 or newer; 'java' is version ${major:-unknown}"
    mkdir -p "$KAFKA_INSTALL"
    rm -rf "$LIBS.new" "$CLASSES.new"
    log "installing Kafka $KAFKA_VERSION jars from Maven Central (mvn dependency:copy-dependencies)..."
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -Dkafka.version="$KAFKA_VERSION" -Dlumen.libs.dir="$LIBS.new" \
        >"$KAFKA_INSTALL/install.log" 2>&1; then
        show_tail "$KAFKA_INSTALL/install.log" 30
        die "mvn could not resolve Kafka $KAFKA_VERSION (see $KAFKA_INSTALL/install.log)"
    fi
    [[ -f $LIBS.new/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
    log "compiling the topic/readiness helper (LumenKafkaAdmin.java)..."
    javac --release 17 -nowarn -cp "$LIBS.new/*" -d "$CLASSES.new" "$ADMIN_SRC" >>"$KAFKA_INSTALL/install.log" 2>&1 || {
        show_tail "$KAFKA_INSTALL/install.log" 30
        die "javac failed on $ADMIN_SRC"
    }
    rm -rf "$LIBS" "$CLASSES"
    mv "$LIBS.new" "$LIBS"
    mv "$CLASSES.new" "$CLASSES"
    install_marker >"$MARKER"
    log "Kafka $KAFKA_VERSION installed: $(find "$LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$LIBS" | cut -f1), in $(elapsed "$t0")"
}

# ------------------------------------------------------------------ helpers

# Java for short-lived tools: small heap, fast start.
tool_java() {
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J" -Dlog4j2.shutdownHookEnabled=false -Dlumen.tools.level="${LUMEN_KAFKA_TOOLS_LOG_LEVEL:-ERROR}" \
        -cp "$CLASSES:$LIBS/*" "$@"
}

# Runs LumenKafkaAdmin, its stdout lines as our log lines.
admin() {
    tool_java LumenKafkaAdmin "$@" | while IFS= read -r line; do log "$line"; done
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars),
# not starting with '-' (it would read as an option).
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id == -* ]] || break
    done
    printf '%s\n' "$id"
}

write_server_properties() {
    mkdir -p "$DATA"
    cat >"$PROPS.tmp" <<EOF
# Generated by deploy/local/kafka.sh at every start: edits here are overwritten
# (use LUMEN_KAFKA_EXTRA_CONFIG). Single KRaft node: broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA

# One node: every replication factor and min ISR is 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the default 50: the first consumer group and the
# first transactional producer get going faster. Never change these once the
# internal topics exist (groups and transactional ids are hashed onto them).
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10

# Topics are created by kafka.sh (lumen.*) or by tests, never by a typo.
auto.create.topics.enable=false
num.partitions=$KAFKA_PARTITIONS
# Consumer groups start at once instead of after 3 s.
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
    if [[ -n ${LUMEN_KAFKA_EXTRA_CONFIG:-} ]]; then
        printf '\n# LUMEN_KAFKA_EXTRA_CONFIG\n%s\n' "$LUMEN_KAFKA_EXTRA_CONFIG" >>"$PROPS.tmp"
    fi
    mv "$PROPS.tmp" "$PROPS"
}

format_storage_once() {
    [[ -f $DATA/meta.properties ]] && return 0
    local id
    id=$(new_cluster_id)
    log "formatting KRaft storage in $DATA (cluster id $id)..."
    tool_java kafka.tools.StorageTool format --config "$PROPS" --cluster-id "$id" --ignore-formatted \
        2>&1 | sed '/^Bootstrap metadata:/d' | while IFS= read -r line; do log "  $line"; done || die "kafka.tools.StorageTool format failed"
    [[ -f $DATA/meta.properties ]] || die "formatting $DATA failed"
}

# ------------------------------------------------------------------ commands

cmd_start() {
    local pid
    if pid=$(running_pid "$PIDFILE" "$PID_PATTERN"); then
        log "Kafka already running (pid $pid) on $KAFKA_BOOTSTRAP"
        if ! wait_for "Kafka port $KAFKA_PORT" "$KAFKA_START_TIMEOUT" "$pid" port_listening "$KAFKA_PORT"; then
            show_tail "$LOG"
            die "Kafka (pid $pid) is running but does not listen on $KAFKA_BOOTSTRAP"
        fi
        if [[ -f $TOPICS_MARKER && $(<"$TOPICS_MARKER") == "$(topics_marker "$pid")" ]]; then
            local names=("${TOPICS[@]%%:*}")
            log "topics ${names[*]} already ensured for this broker run ('kafka.sh topics' re-checks)"
        else
            cmd_topics
        fi
        return 0
    fi
    is_installed || cmd_install
    require_port_free "$KAFKA_PORT" "Kafka listener, LUMEN_KAFKA_PORT"
    require_port_free "$KAFKA_CONTROLLER_PORT" "Kafka controller, LUMEN_KAFKA_CONTROLLER_PORT"
    write_server_properties
    format_storage_once

    log "starting Kafka $KAFKA_VERSION on $KAFKA_BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, data $DATA)..."
    local t0
    t0=$(now_us)
    start_detached "$OUT" java "-Xmx$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$BROKER_LOG4J" -Dlumen.kafka.log="$LOG" \
        -cp "$LIBS/*" kafka.Kafka "$PROPS"
    pid=$STARTED_PID
    echo "$pid" >"$PIDFILE"

    local rc=0
    wait_for "Kafka port $KAFKA_PORT" "$KAFKA_START_TIMEOUT" "$pid" port_listening "$KAFKA_PORT" || rc=$?
    if ((rc == 0)); then
        log "listening on $KAFKA_BOOTSTRAP after $(elapsed "$t0"); waiting for metadata, creating topics..."
        admin ensure-topics "$KAFKA_BOOTSTRAP" "$KAFKA_START_TIMEOUT" "${TOPICS[@]}" || rc=$?
        ((rc != 0)) || topics_marker "$pid" >"$TOPICS_MARKER"
    fi
    if ((rc != 0)); then
        show_tail "$OUT" 20
        show_tail "$LOG" 40
        if pid_alive "$pid"; then
            stop_pid "$pid" Kafka 10 || true
        fi
        rm -f "$PIDFILE"
        die "Kafka did not become ready (logs: $LOG, $OUT)"
    fi
    log "Kafka ready on $KAFKA_BOOTSTRAP in $(elapsed "$t0") (pid $pid, log $LOG)"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid "$PIDFILE" "$PID_PATTERN"); then
        log "Kafka is not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)..."
    stop_pid "$pid" Kafka "${LUMEN_KAFKA_STOP_TIMEOUT:-60}"
    rm -f "$PIDFILE"
}

cmd_status() {
    local pid
    if pid=$(running_pid "$PIDFILE" "$PID_PATTERN"); then
        if port_listening "$KAFKA_PORT"; then
            echo "Kafka $KAFKA_VERSION running (pid $pid) on $KAFKA_BOOTSTRAP, data $DATA"
        else
            echo "Kafka running (pid $pid) but not (yet) listening on $KAFKA_BOOTSTRAP; log $LOG"
        fi
        return "$STATUS_RUNNING"
    fi
    echo "Kafka stopped"
    return "$STATUS_STOPPED"
}

cmd_pid() {
    running_pid "$PIDFILE" "$PID_PATTERN" || true
}

require_running() {
    running_pid "$PIDFILE" "$PID_PATTERN" >/dev/null || die "Kafka is not running (deploy/local/kafka.sh start)"
}

# What the topics marker holds: the broker's pid and the topic specs it was given.
topics_marker() {
    printf '%s %s\n' "$1" "${TOPICS[*]}"
}

cmd_topics() {
    local pid
    pid=$(running_pid "$PIDFILE" "$PID_PATTERN") || die "Kafka is not running (deploy/local/kafka.sh start)"
    admin ensure-topics "$KAFKA_BOOTSTRAP" "$KAFKA_START_TIMEOUT" "${TOPICS[@]}"
    topics_marker "$pid" >"$TOPICS_MARKER"
}

cmd_selftest() {
    require_running
    admin selftest "$KAFKA_BOOTSTRAP" 60
}

cmd_cli() {
    (($#)) || die "usage: kafka.sh cli TOOL [ARGS...]"
    is_installed || die "Kafka is not installed (deploy/local/kafka.sh install)"
    local tool=$1 class
    shift
    case $tool in
        topics) class=org.apache.kafka.tools.TopicCommand ;;
        console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
        console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        transactions) class=org.apache.kafka.tools.TransactionsCommand ;;
        configs) class=org.apache.kafka.tools.ConfigCommand ;;
        get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
        metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
        *.*) class=$tool ;;
        *) die "unknown tool '$tool' (topics, console-producer, console-consumer, consumer-groups, transactions, configs, get-offsets, metadata-quorum, or a class name)" ;;
    esac
    local args=("$@")
    if [[ " ${args[*]} " != *" --bootstrap-server "* && " ${args[*]} " != *" --bootstrap-controller "* ]]; then
        args=(--bootstrap-server "$KAFKA_BOOTSTRAP" "${args[@]}")
    fi
    LUMEN_KAFKA_TOOLS_LOG_LEVEL=${LUMEN_KAFKA_TOOLS_LOG_LEVEL:-WARN} tool_java "$class" "${args[@]}"
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
    topics) cmd_topics ;;
    selftest) cmd_selftest ;;
    cli) shift && cmd_cli "$@" ;;
    log) exec tail -F "$LOG" ;;
    *) usage ;;
esac
