# Sourced by the integration scripts tests/it_*.sh: where things are, a
# scratch folder, the background processes to kill at exit, pass/fail
# reporting and free loopback ports.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac
PY=/usr/bin/python3
FMNIST=/usr/share/datasets/fashion-mnist

tmp=$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")
pids=()
cleanup() {
    # The pids may be `timeout` wrappers: stop what they run too.
    for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $* [${SECONDS}s]"; }

# image_folder DIR [make_images options]: writes a labeled folder of synthetic
# JPEG and PNG images in class sub-folders (tests/make_images.c, libvips), so
# that no test needs a dataset from outside the repository.
image_folder() {
    local dir=$1; shift
    require_built "$BUILD/tools/make_images"
    "$BUILD/tools/make_images" --out "$dir" "$@" ||
        { echo "FAIL: cannot write the test images in $dir"; exit 1; }
}

# skip REASON: this script cannot run here (only for a missing privilege, never
# a missing file); the runner reports it as skipped with REASON.
skip() {
    echo "SKIP: $*"
    exit 77
}

# Exits the test when one of the given executables is not built.
require_built() {
    local f
    for f in "$@"; do
        [ -x "$f" ] || { echo "FAIL: $f is not built (run make)"; exit 1; }
    done
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# steps_done RUN: the training steps written to RUN/metrics.jsonl so far
steps_done() {
    local n
    n=$(grep -c '"loss"' "$1/metrics.jsonl" 2>/dev/null)
    echo "${n:-0}"
}

# gone PID SECONDS: the process has exited within SECONDS
gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}
