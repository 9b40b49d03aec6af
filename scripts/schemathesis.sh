#!/usr/bin/env bash
# Runs schemathesis (PyPI) against the exchange-rates example's query server: every route
# of /openapi.json, with generated paths, queries and keys, is checked against the
# document (status codes, content types, response schemas, no 5xx), once with the server's
# bearer token and once without it (every protected route must then answer 401 as
# documented). Not part of the test run: it takes a few minutes and needs PyPI once.
#
#   bash scripts/schemathesis.sh [--max-examples N]     (default 50 per operation)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
examples=50
if [ "${1:-}" = "--max-examples" ]; then examples="$2"; fi
version=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kstreams-schemathesis"
if ! "$venv/bin/st" --version 2> /dev/null | grep -q "$version"; then
  echo "==> installing schemathesis $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi
cargo build --workspace --features "$STREAMS_TEST_FEATURES" --locked -q -p streams-examples \
  --bin exchange-rates
bin="$CARGO_TARGET_DIR/debug/exchange-rates"
work=$(mktemp -d)
pid=""
stop() {
  if [ -n "$pid" ]; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap stop EXIT
token="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf 'http.bearer.token=%s\n' "$token" > "$work/app.properties"
# The example's store, so that generated requests reach it rather than 404 on a random name.
printf '[parameters]\n"path.store" = "rates-store"\n' > "$work/schemathesis.toml"
"$bin" --config "$work/app.properties" --state-dir "$work/state" --http 127.0.0.1:0 \
  --updates examples/data/rates.csv 2> "$work/stderr" &
pid=$!
addr=""
for _ in $(seq 600); do
  addr=$(sed -n 's|.* on http://||p' "$work/stderr" | head -1)
  [ -n "$addr" ] && curl -sf "http://$addr/readyz" > /dev/null && break
  addr=""
  sleep 0.1
done
if [ -z "$addr" ]; then cat "$work/stderr" >&2; echo "the example did not start" >&2; exit 1; fi
echo "==> schemathesis against http://$addr/openapi.json" >&2
run() {
  # From the scratch directory: schemathesis keeps a cache in the one it runs in.
  (cd "$work" && "$venv/bin/st" --config-file "$work/schemathesis.toml" run "http://$addr/openapi.json" \
    --checks all --max-examples "$examples" \
    --seed 1 --no-color "$@")
}
run --header "Authorization: Bearer $token"
echo "==> again without the token" >&2
run
