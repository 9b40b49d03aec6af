#!/usr/bin/env bash
# The quick start: runs the exchange-rates example on the embedded log. It publishes rate
# updates to a compacted topic, materializes them into a table and serves it over HTTP; the
# script queries it, stops it, restarts it with no input (the table is restored from its
# changelog) and queries again. Installs missing system packages first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked -q
bin="$CARGO_TARGET_DIR/debug/exchange-rates"
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

start() {
  "$bin" --state-dir "$work/state" --http 127.0.0.1:0 "$@" 2>"$work/stderr" &
  pid=$!
  for _ in $(seq 600); do
    addr=$(sed -n 's|.* on http://||p' "$work/stderr" | head -1)
    # HTTP answers from before the start-up restore; /readyz says when the stores do.
    [ -n "$addr" ] && curl -sf "http://$addr/readyz" > /dev/null && return
    sleep 0.1
  done
  cat "$work/stderr"; exit 1
}
get() { printf 'GET %-16s -> ' "$1"; curl -s -w ' (%{http_code})\n' "http://$addr$1"; }
stop() { kill -TERM "$pid"; wait "$pid"; }

echo "== updates (examples/data/rates.csv):"; cat examples/data/rates.csv
start --updates examples/data/rates.csv
sleep 1
echo "== serving on $addr"
get /rates; get /rates/USD/GBP; get /rates/CHF/GBP; get /health; get /readyz
curl -s "http://$addr/metrics" | grep -E '^streams_task_records_processed_total' | head -3
grep 'skipped' "$work/stderr" || true
stop

echo "== restarted with no input: the table comes back from its changelog"
start </dev/null
sleep 1
get /rates; get /rates/EUR/GBP
stop
