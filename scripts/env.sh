# Sourced by the other scripts: installs what the build needs when it is missing and sets a
# build cache outside the clone, so a fresh clone reuses an earlier build of RocksDB.
set -euo pipefail

have_libclang() {
    ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' \
        || compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' > /dev/null
}

packages=()
if ! have_libclang || ! command -v clang > /dev/null; then
    packages+=(clang libclang-dev) # RocksDB's bindgen needs them
fi
command -v curl > /dev/null || packages+=(curl) # the quick start queries the example with it
# librdkafka's TLS (rdkafka's `ssl`) links the system's OpenSSL, found through pkg-config.
command -v pkg-config > /dev/null || packages+=(pkg-config)
if ! pkg-config --exists openssl 2> /dev/null; then
    packages+=(libssl-dev)
fi
# The test broker's SASL_SSL listener gets its test CA and certificate from openssl.
command -v openssl > /dev/null || packages+=(openssl)
if [ ${#packages[@]} -gt 0 ]; then
    echo "==> installing ${packages[*]}" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" > /dev/null
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kstreams-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Features every build of the test suite uses (one build: clippy, docs and tests agree). Not
# KSTREAMS_-prefixed: programs reading their settings from the environment take every
# KSTREAMS_* variable for one (Properties::from_env).
export STREAMS_TEST_FEATURES="streams-dsl/kafka streams-dsl/http"
