#!/usr/bin/env bash
# Runs the whole test suite. Installs missing system packages first (as root, or with sudo),
# and the test broker, Apache Kafka (Java and Maven with apt when they are missing, then
# Kafka's jars from Maven Central into ~/.cache: a minute or so), when it is missing.
# The first build compiles RocksDB and takes about 20 minutes on 2 cores. Kafka Streams, the
# reference of streams-dsl/tests/dsl_reference.rs, is installed the same way (its jars into
# ~/.cache, its runner compiled there), once; both work offline afterwards.
#
# The Kafka tests (feature `streams-dsl/kafka`) start their own broker on a free port, one
# per test binary, or use KAFKA_BOOTSTRAP_SERVERS when it is set. A broker that cannot be
# started fails them.
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
bash scripts/kafka-broker.sh install
bash scripts/kafka-streams-reference.sh install
echo "==> cargo test (target dir: $CARGO_TARGET_DIR)" >&2
cargo test --workspace --all-targets --locked --features "$STREAMS_TEST_FEATURES"
cargo test --workspace --doc --locked --features "$STREAMS_TEST_FEATURES"
