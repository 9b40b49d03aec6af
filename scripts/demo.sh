#!/usr/bin/env bash
# Runs the demo on the embedded log. Installs missing system packages first.
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
cargo run --locked -q -p streams-examples --bin demo -- "$@"
