#!/usr/bin/env bash
# Starts and stops the test broker, Apache Kafka (a single-node KRaft broker and controller) on
# 127.0.0.1, installing it first when it is missing. Used by scripts/test.sh and by the Kafka
# integration tests' harness.
#
#   kafka-broker.sh install
#   kafka-broker.sh start [--port N] [--dir DIR] [--owner PID] [--sasl-ssl-port M]
#   kafka-broker.sh stop  [--port N] [--dir DIR]
#   kafka-broker.sh status [--port N] [--dir DIR]
#
# `install` needs Java 17+ and Maven (installed with apt when missing) and copies Kafka's jars,
# the version in scripts/kafka-broker/pom.xml, into ~/.cache/kstreams-kafka-<version> once.
# `start` returns once the broker has started and accepts connections, and fails (exit 1, with
# the broker's log) when it exits or does not start within KAFKA_BROKER_START_TIMEOUT seconds
# (90). It prints `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:N` on standard output, nothing else.
# Storage is durable: the data lives in DIR/data, and a start on the same DIR (with the same
# --port) keeps every topic, record and committed offset. With --owner PID the broker is
# stopped when that process ends (the tests use it so that no broker outlives them).
# KAFKA_BROKER_HEAP sets the JVM's heap options (default -Xms64m -Xmx512m).
#
# With --sasl-ssl-port M the broker also listens on 127.0.0.1:M with SASL_SSL (pass the same M
# on every start of DIR). The script makes a test CA and a broker certificate for 127.0.0.1
# and localhost (openssl, installed with apt when missing) into DIR/tls once, and these users:
#   alice / alice-secret   SCRAM-SHA-512 (added to the storage when it is formatted)
#   bob / bob-secret       PLAIN
#   any name               OAUTHBEARER with an unsecured JWT (Kafka's test validator)
# and `start` prints two more lines: `KAFKA_SASL_SSL_SERVERS=127.0.0.1:M` and
# `KAFKA_SSL_CA_LOCATION=DIR/tls/ca.pem` (the CA a client must trust).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
pom="$here/kafka-broker/pom.xml"
KAFKA_VERSION="$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$pom")"
[ -n "$KAFKA_VERSION" ] || { echo "kafka-broker.sh: no <kafka.version> in $pom" >&2; exit 1; }
jars="${XDG_CACHE_HOME:-$HOME/.cache}/kstreams-kafka-$KAFKA_VERSION"

port="${KAFKA_BROKER_PORT:-9092}"
dir=""
owner=""
sasl_ssl_port=""

die() {
    echo "kafka-broker.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,29p' "$0" >&2
    exit 2
}

command="${1:-}"
[ -n "$command" ] || usage
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        # Accepted for older callers: the storage is always durable.
        --storage) shift 2 ;;
        --owner) owner="$2"; shift 2 ;;
        --sasl-ssl-port) sasl_ssl_port="$2"; shift 2 ;;
        *) usage ;;
    esac
done
dir="${dir:-${TMPDIR:-/tmp}/kstreams-kafka-broker-$port}"
pidfile="$dir/broker.pid"
logfile="$dir/broker.log"

apt_install() {
    echo "==> installing $*" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" > /dev/null
}

java_major() {
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

install() {
    if [ -f "$jars/.complete" ]; then
        return 0
    fi
    local missing=()
    if ! command -v java > /dev/null || [ "$(java_major)" -lt 17 ]; then
        missing+=(default-jre-headless) # Java 17 on Debian 12, 21 on Debian 13
    fi
    command -v mvn > /dev/null || missing+=(maven)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}" || die "installing ${missing[*]} with apt-get failed"
    fi
    [ "$(java_major)" -ge 17 ] || die "Apache Kafka $KAFKA_VERSION needs Java 17 or later; \`java -version\` says $(java_major)"
    echo "==> copying Apache Kafka $KAFKA_VERSION's jars into $jars (Maven)" >&2
    mkdir -p "$(dirname "$jars")"
    # Into a directory of its own first, so that a concurrent or failed install leaves no
    # half-filled cache behind.
    local tmp
    tmp="$(mktemp -d "$jars.tmp.XXXXXX")"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" >&2; then
        rm -rf "$tmp"
        die "Maven could not fetch Apache Kafka $KAFKA_VERSION (mvn -f $pom dependency:copy-dependencies)"
    fi
    touch "$tmp/.complete"
    if ! mv -T "$tmp" "$jars" 2> /dev/null; then
        rm -rf "$tmp" # another install finished first
    fi
    [ -f "$jars/.complete" ] || die "the jar cache $jars is incomplete; remove it and retry"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_answers() {
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

running_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid="$(cat "$pidfile")"
    kill -0 "$pid" 2> /dev/null || return 1
    echo "$pid"
}

# A port nothing listens on, for the controller (kept in DIR for restarts).
controller_port() {
    if [ -f "$dir/controller.port" ]; then
        cat "$dir/controller.port"
        return 0
    fi
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if [ "$p" != "$port" ] && ! port_answers "$p"; then
            echo "$p" > "$dir/controller.port"
            echo "$p"
            return 0
        fi
    done
    die "no free port for the controller"
}

# A cluster id as Kafka makes them: 16 random bytes, URL-safe base64 without padding, not
# starting with '-'.
cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        case "$id" in -*) ;; *) echo "$id"; return 0 ;; esac
    done
}

# The keystore's password (a test secret: the keystore lives in DIR/tls beside its key).
TLS_PASSWORD="kstreams-test-keystore"

# A test CA and a broker certificate signed by it, for 127.0.0.1 and localhost (librdkafka
# checks the name), in DIR/tls, made once.
make_tls() {
    local tls="$dir/tls"
    [ -f "$tls/broker.p12" ] && [ -f "$tls/ca.pem" ] && return 0
    command -v openssl > /dev/null || apt_install openssl || die "installing openssl with apt-get failed"
    rm -rf "$tls.tmp"
    mkdir -p "$tls.tmp"
    (
        cd "$tls.tmp"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
            -subj "/CN=kstreams test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
            -subj "/CN=127.0.0.1"
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out broker.pem -days 3650 -extfile broker.ext
        openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem \
            -name broker -out broker.p12 -passout "pass:$TLS_PASSWORD"
    ) > "$tls.tmp/openssl.log" 2>&1 || {
        cat "$tls.tmp/openssl.log" >&2
        die "making the test CA and broker certificate with openssl failed (log above)"
    }
    rm -rf "$tls"
    mv "$tls.tmp" "$tls"
}

write_config() {
    local cport="$1"
    local listeners="PLAINTEXT://127.0.0.1:$port"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [ -n "$sasl_ssl_port" ]; then
        listeners="$listeners,SASL_SSL://127.0.0.1:$sasl_ssl_port"
        protocols="$protocols,SASL_SSL:SASL_SSL"
    fi
    cat > "$dir/server.properties" << EOF
# Written by scripts/kafka-broker.sh: a single-node KRaft broker and controller for tests.
process.roles=broker,controller
node.id=1
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$cport
log.dirs=$dir/data
# Topics are created by the applications, as on a production cluster.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# No time retention: the tests' records carry timestamps near 1970 (milliseconds from 1), and
# Kafka deletes by record timestamp (7 days on the topics the library creates), so the first
# retention check, 30 s after the start by default, would delete them mid-test. The broker's
# periodic log tasks start a day after it does.
log.initial.task.delay.ms=86400000
log.retention.check.interval.ms=86400000
# Tests use short session timeouts to show eviction quickly.
group.min.session.timeout.ms=1000
# Small and few: several brokers may run at once on a small machine.
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=8388608
log.cleaner.threads=1
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
    if [ -n "$sasl_ssl_port" ]; then
        cat >> "$dir/server.properties" << EOF
# The SASL_SSL listener (--sasl-ssl-port): SCRAM users live in the cluster's metadata (added
# when the storage is formatted), PLAIN users in the JAAS line, OAUTHBEARER tokens are
# unsecured JWTs checked by Kafka's default (test) validator.
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_bob="bob-secret";
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$TLS_PASSWORD
ssl.key.password=$TLS_PASSWORD
EOF
    fi
    cat > "$dir/log4j2.properties" << EOF
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

start() {
    install
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    pidfile="$dir/broker.pid"
    logfile="$dir/broker.log"
    # A fresh log marks the directory as in use at once: the test harnesses remove broker
    # directories with no running broker and a log older than ten minutes (or none).
    touch "$logfile"
    if pid="$(running_pid)"; then
        die "a broker started from $dir is already running (pid $pid); stop it first"
    fi
    if port_answers "$port"; then
        die "127.0.0.1:$port is already in use by another process"
    fi
    if [ -n "$sasl_ssl_port" ]; then
        if port_answers "$sasl_ssl_port"; then
            die "127.0.0.1:$sasl_ssl_port (--sasl-ssl-port) is already in use by another process"
        fi
        make_tls
    fi
    local cport
    cport="$(controller_port)"
    if port_answers "$cport"; then
        die "the controller's port 127.0.0.1:$cport (kept in $dir/controller.port) is in use"
    fi
    write_config "$cport"
    local java_opts=(${KAFKA_BROKER_HEAP:--Xms64m -Xmx512m} -XX:+UseSerialGC
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$dir/log4j2.properties")
    if [ ! -f "$dir/data/meta.properties" ]; then
        echo "==> formatting $dir/data for Apache Kafka $KAFKA_VERSION" >&2
        local scram=()
        if [ -n "$sasl_ssl_port" ]; then
            scram=(--add-scram 'SCRAM-SHA-512=[name=alice,password=alice-secret]')
        fi
        if ! java "${java_opts[@]}" -cp "$jars/*" kafka.tools.StorageTool format \
            -t "$(cluster_id)" -c "$dir/server.properties" --standalone "${scram[@]}" \
            >> "$logfile" 2>&1; then
            tail -n 40 "$logfile" >&2 || true
            die "formatting the broker's storage failed (log above, full log in $logfile)"
        fi
    fi
    local from=0
    [ -f "$logfile" ] && from="$(stat -c %s "$logfile")"
    echo "==> starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port (controller :$cport, log $logfile)" >&2
    # setsid: the broker must not get the terminal's signals meant for the caller.
    setsid java "${java_opts[@]}" -cp "$jars/*" kafka.Kafka "$dir/server.properties" \
        >> "$logfile" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" > "$pidfile"
    local timeout="${KAFKA_BROKER_START_TIMEOUT:-90}"
    local deadline=$((SECONDS + timeout))
    # Started: the broker is unfenced and serves requests (metadata among them).
    until tail -c +$((from + 1)) "$logfile" | grep -q 'Kafka Server started' \
        && port_answers "$port" \
        && { [ -z "$sasl_ssl_port" ] || port_answers "$sasl_ssl_port"; }; do
        if ! kill -0 "$pid" 2> /dev/null; then
            tail -n 40 "$logfile" >&2 || true
            rm -f "$pidfile"
            die "the broker exited at start (log above, full log in $logfile)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 40 "$logfile" >&2 || true
            kill -9 "$pid" 2> /dev/null || true
            rm -f "$pidfile"
            die "the broker did not start on 127.0.0.1:$port within ${timeout}s"
        fi
        sleep 0.2
    done
    if [ -n "$owner" ]; then
        # Stops the broker once the owner is gone (and ends with the broker); detached so the
        # caller does not wait on it.
        setsid bash -c '
            while kill -0 "$1" 2> /dev/null && kill -0 "$2" 2> /dev/null; do sleep 1; done
            if kill -0 "$2" 2> /dev/null && [ "$(cat "$3" 2> /dev/null)" = "$2" ]; then
                kill "$2" 2> /dev/null || true
                for _ in $(seq 1 300); do kill -0 "$2" 2> /dev/null || break; sleep 0.1; done
                kill -9 "$2" 2> /dev/null || true
                rm -f "$3"
            fi
        ' watchdog "$owner" "$pid" "$pidfile" > /dev/null 2>&1 < /dev/null &
    fi
    echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port"
    if [ -n "$sasl_ssl_port" ]; then
        echo "KAFKA_SASL_SSL_SERVERS=127.0.0.1:$sasl_ssl_port"
        echo "KAFKA_SSL_CA_LOCATION=$dir/tls/ca.pem"
    fi
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$pidfile"
        echo "==> no broker running from $dir" >&2
        return 0
    fi
    kill "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2> /dev/null; then
        echo "==> the broker did not stop within 30s; killing it" >&2
        kill -9 "$pid" 2> /dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
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
