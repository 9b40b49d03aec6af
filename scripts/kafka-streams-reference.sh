#!/usr/bin/env bash
# Kafka Streams itself, the reference the differential test (streams-dsl/tests/dsl_reference.rs)
# compares this engine with: the Java project in streams-dsl/tests/reference/kafka-streams/.
#
#   kafka-streams-reference.sh install            fetch the jars and compile the runner once
#   kafka-streams-reference.sh run CASES RESULTS  run a file of cases (see Runner.java) in one JVM
#
# `install` needs Java 17+ and Maven (installed with apt when missing). It copies Kafka Streams'
# jars, the version in the project's pom.xml, into ~/.cache/kstreams-kafka-streams-<version>
# once per machine (Maven Central), and compiles the project's sources there with javac, again
# whenever they change; after that it works offline. `run` installs first. Either fails (exit 1,
# saying why) when it cannot: the differential test fails with it, it does not skip.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$here/../streams-dsl/tests/reference/kafka-streams"
pom="$project/pom.xml"
KAFKA_VERSION="$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$pom")"
[ -n "$KAFKA_VERSION" ] || { echo "kafka-streams-reference.sh: no <kafka.version> in $pom" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kstreams-kafka-streams-$KAFKA_VERSION"
jars="$cache/jars"

die() {
    echo "kafka-streams-reference.sh: $*" >&2
    exit 1
}

java_major() {
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

# The compiled runner, named by a digest of its sources so that an edit compiles it again.
classes_dir() {
    local digest
    digest="$(cd "$project" && find src -name '*.java' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
    echo "$cache/classes-$digest"
}

install() {
    local missing=()
    if ! command -v java > /dev/null || ! command -v javac > /dev/null || [ "$(java_major)" -lt 17 ]; then
        missing+=(default-jdk-headless) # javac too; Java 17 on Debian 12, 21 on Debian 13
    fi
    if [ ! -f "$jars/.complete" ] && ! command -v mvn > /dev/null; then
        missing+=(maven)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]}" >&2
        local sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        { $sudo apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null; } \
            || die "installing ${missing[*]} with apt-get failed"
    fi
    [ "$(java_major)" -ge 17 ] || die "Kafka Streams $KAFKA_VERSION needs Java 17 or later; \`java -version\` says $(java_major)"
    mkdir -p "$cache"
    local tmp
    if [ ! -f "$jars/.complete" ]; then
        echo "==> copying Kafka Streams $KAFKA_VERSION's jars into $jars (Maven)" >&2
        # Into a directory of its own first, so that a concurrent or failed install leaves no
        # half-filled cache behind.
        tmp="$(mktemp -d "$jars.tmp.XXXXXX")"
        if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" >&2; then
            rm -rf "$tmp"
            die "Maven could not fetch Kafka Streams $KAFKA_VERSION (mvn -f $pom dependency:copy-dependencies)"
        fi
        touch "$tmp/.complete"
        mv -T "$tmp" "$jars" 2> /dev/null || rm -rf "$tmp" # another install finished first
    fi
    [ -f "$jars/.complete" ] || die "the jar cache $jars is incomplete; remove it and retry"
    local classes
    classes="$(classes_dir)"
    if [ ! -f "$classes/.complete" ]; then
        echo "==> compiling the Kafka Streams reference into $classes" >&2
        tmp="$(mktemp -d "$classes.tmp.XXXXXX")"
        if ! javac -Xlint:all -Werror -d "$tmp" -cp "$jars/*" $(find "$project/src" -name '*.java') >&2; then
            rm -rf "$tmp"
            die "compiling $project/src failed"
        fi
        touch "$tmp/.complete"
        mv -T "$tmp" "$classes" 2> /dev/null || rm -rf "$tmp"
    fi
}

case "${1:-}" in
    install) install ;;
    run)
        [ $# -eq 3 ] || die "usage: kafka-streams-reference.sh run CASES RESULTS"
        install
        exec java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            -cp "$jars/*:$(classes_dir)" kstreams.reference.Runner "$2" "$3"
        ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
