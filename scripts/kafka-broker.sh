#!/usr/bin/env bash
# Starts and stops a Kafka-protocol test broker (Tansu) on 127.0.0.1, installing it first when
# it is missing. Used by scripts/test.sh and by the Kafka integration tests' harness.
#
#   kafka-broker.sh install
#   kafka-broker.sh start [--port N] [--dir DIR] [--storage memory|sqlite] [--owner PID]
#   kafka-broker.sh stop  [--port N] [--dir DIR]
#   kafka-broker.sh status [--port N] [--dir DIR]
#
# `start` returns once the port accepts connections, and fails (exit 1, with the broker's log)
# when the broker exits or does not answer within KAFKA_BROKER_START_TIMEOUT seconds (30).
# It prints `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:N` on standard output, nothing else.
# --storage memory (the default) loses everything when the broker stops; sqlite keeps it in
# DIR/tansu.db across restarts. With --owner PID the broker is stopped when that process ends
# (the tests use it so that no broker outlives them).
set -euo pipefail

TANSU_VERSION="0.6.0"
TANSU_FEATURES="dynostore,libsql" # without a storage engine feature the broker exits at start
PATH="$HOME/.cargo/bin:$PATH"

port="${KAFKA_BROKER_PORT:-9092}"
dir=""
storage="memory"
owner=""

die() {
    echo "kafka-broker.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,15p' "$0" >&2
    exit 2
}

command="${1:-}"
[ -n "$command" ] || usage
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --storage) storage="$2"; shift 2 ;;
        --owner) owner="$2"; shift 2 ;;
        *) usage ;;
    esac
done
dir="${dir:-${TMPDIR:-/tmp}/kstreams-kafka-broker-$port}"
pidfile="$dir/broker.pid"
logfile="$dir/broker.log"

install() {
    if command -v tansu > /dev/null; then
        return 0
    fi
    command -v cargo > /dev/null || die "cargo is needed to install the test broker (Tansu)"
    # A build directory that outlives a failed attempt, so a retry resumes where it stopped.
    local build_dir="${XDG_CACHE_HOME:-$HOME/.cache}/tansu-install-target"
    echo "==> installing Tansu $TANSU_VERSION with cargo (about 15 minutes on 2 cores)" >&2
    cargo install --locked tansu --version "$TANSU_VERSION" --features "$TANSU_FEATURES" \
        --target-dir "$build_dir" >&2 \
        || die "installing Tansu failed (cargo install --locked tansu --features $TANSU_FEATURES)"
    rm -rf "$build_dir"
    command -v tansu > /dev/null || die "Tansu was installed but \`tansu\` is not on PATH"
}

# True when something accepts TCP connections on 127.0.0.1:$port.
port_answers() {
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null
}

running_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid="$(cat "$pidfile")"
    kill -0 "$pid" 2> /dev/null || return 1
    echo "$pid"
}

start() {
    install
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    pidfile="$dir/broker.pid"
    logfile="$dir/broker.log"
    if pid="$(running_pid)"; then
        die "a broker started from $dir is already running (pid $pid); stop it first"
    fi
    if port_answers; then
        die "127.0.0.1:$port is already in use by another process"
    fi
    local engine
    case "$storage" in
        memory) engine="memory://tansu/" ;;
        # Tansu opens the database relative to its working directory (see below).
        sqlite) engine="sqlite://tansu.db" ;;
        *) die "unknown storage \`$storage\` (memory or sqlite)" ;;
    esac
    local url="tcp://127.0.0.1:$port"
    echo "==> starting Tansu on $url ($storage storage, log $logfile)" >&2
    # setsid: the broker must not get the terminal's signals meant for the caller.
    cd "$dir"
    setsid tansu broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine "$engine" >> "$logfile" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" > "$pidfile"
    local timeout="${KAFKA_BROKER_START_TIMEOUT:-30}"
    local deadline=$((SECONDS + timeout))
    until port_answers; do
        if ! kill -0 "$pid" 2> /dev/null; then
            tail -n 40 "$logfile" >&2 || true
            rm -f "$pidfile"
            die "the broker exited at start (log above, full log in $logfile)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 40 "$logfile" >&2 || true
            kill "$pid" 2> /dev/null || true
            rm -f "$pidfile"
            die "the broker did not answer on 127.0.0.1:$port within ${timeout}s"
        fi
        sleep 0.1
    done
    if [ -n "$owner" ]; then
        # Stops the broker once the owner is gone; detached so the caller does not wait on it.
        setsid bash -c '
            while kill -0 "$1" 2> /dev/null; do sleep 1; done
            kill "$2" 2> /dev/null || true
            rm -f "$3"
        ' watchdog "$owner" "$pid" "$pidfile" > /dev/null 2>&1 < /dev/null &
    fi
    echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$pidfile"
        echo "==> no broker running from $dir" >&2
        return 0
    fi
    kill "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2> /dev/null; then
        echo "==> the broker did not stop within 10s; killing it" >&2
        kill -9 "$pid" 2> /dev/null || true
    fi
    rm -f "$pidfile"
    echo "==> broker stopped" >&2
}

case "$command" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status)
        if pid="$(running_pid)"; then
            echo "running (pid $pid) on 127.0.0.1:$port"
        else
            echo "not running"
            exit 1
        fi
        ;;
    *) usage ;;
esac
