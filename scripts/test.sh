#!/usr/bin/env bash
# Runs the whole test suite. Installs missing system packages first (as root, or with sudo).
# The first build compiles RocksDB and takes about 20 minutes on 2 cores.
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
echo "==> cargo test (target dir: $CARGO_TARGET_DIR)" >&2
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
