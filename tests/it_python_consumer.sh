#!/usr/bin/env bash
# Swapping a stage: examples/python_consumer.py takes the trainer's place.
# The real loader (Fashion-MNIST) and two augmenter workers feed it; it must
# receive the images it asked for, each once, with two 1x28x28 float32 views
# in [0, 1] and labels 0..9, and its STOP must end the loader and augmenter.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac
PY=/usr/bin/python3
FASHION=/usr/share/datasets/fashion-mnist
IMAGES=2000

tmp=$(mktemp -d /tmp/it_python_consumer.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

[ -d "$FASHION" ] || fail "$FASHION missing (make deps installs dataset-fashion-mnist)"
"$PY" -c 'import zmq, msgpack, numpy' 2>/dev/null || fail "$PY lacks zmq/msgpack/numpy (make deps)"
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
lp=$(port); tp=$(port); cp=$(port)

"$PY" "$root/examples/python_consumer.py" --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
    --images "$IMAGES" --summary "$tmp/summary.json" >"$tmp/consumer.log" 2>&1 &
consumer=$!
"$BUILD/bin/loader" --data "$FASHION" --epochs 0 --bind "tcp://127.0.0.1:$lp" \
    --control "tcp://127.0.0.1:$cp" --quiet >"$tmp/loader.log" 2>&1 &
loader=$!
"$BUILD/bin/augmenter" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" \
    --control "tcp://127.0.0.1:$cp" --workers 2 --size 28 --channels 1 --quiet >"$tmp/aug.log" 2>&1 &
aug=$!
pids+=("$consumer" "$loader" "$aug")

wait_exit() {   # pid, seconds: 0 when the process ended within the time
    for _ in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}
wait_exit "$consumer" 60 || fail "the consumer did not finish in 60 s: $(cat "$tmp/consumer.log")"
wait "$consumer" || fail "the consumer failed: $(cat "$tmp/consumer.log")"
wait_exit "$loader" 10 || fail "the loader did not stop on the consumer's STOP"
wait_exit "$aug" 10 || fail "the augmenter did not stop on the consumer's STOP"
wait "$loader" || fail "loader exit status $?: $(tail -n 3 "$tmp/loader.log")"
wait "$aug" || fail "augmenter exit status $?: $(tail -n 3 "$tmp/aug.log")"

"$PY" - "$tmp/summary.json" "$IMAGES" <<'PYEOF' || fail "the ViewBatches were not as expected: $(cat "$tmp/summary.json")"
import json, sys
d, want = json.load(open(sys.argv[1])), int(sys.argv[2])
assert d["images"] >= want, d["images"]
assert d["distinct"] == d["images"], "a sample arrived twice"
assert d["shapes"] == [["float32", 2, 1, 28, 28]], d["shapes"]
assert set(d["labels"]) <= set(range(10)) and len(d["labels"]) == 10, d["labels"]
assert 0.0 <= d["min"] and d["max"] <= 1.0 and d["max"] > 0.5, (d["min"], d["max"])
PYEOF
echo "it_python_consumer: ok: $(cat "$tmp/summary.json")"
