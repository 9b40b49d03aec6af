# Sourced by the other scripts: installs what the build needs when it is missing and sets a
# build cache outside the clone, so a fresh clone reuses an earlier build of RocksDB.
set -euo pipefail

have_libclang() {
    ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' \
        || compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' > /dev/null
}

if ! have_libclang || ! command -v clang > /dev/null; then
    echo "==> installing clang and libclang (RocksDB's bindgen needs them)" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev > /dev/null
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kstreams-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
