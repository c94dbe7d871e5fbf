#!/usr/bin/env bash
# Loader benchmark: JSON lines on stdout.
#  - loader images/s delivered to a consumer on this machine (bench/loader_sink):
#    CIFAR-10 JPEGs (../shared/data/cifar10-train), epoch 0 decodes, epoch 1
#    streams from the cache; the same with one decoding thread; Fashion-MNIST.
#  - the reference, in the same run: Pillow decoding the same JPEGs in one
#    process (bench/loader_pil.py), and the ratios against the targets
#    (cached epoch >= 50,000 images/s; decoding epoch >= Pillow).
#  - the cost of each decoding step per image (bench/loader_steps).
# The files are read once before timing so that every contender finds them in
# the page cache.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac
CIFAR=${CIFAR:-$root/../shared/data/cifar10-train}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/loader_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_loader NAME EPOCHS LOADER-ARGS...: loader + sink, the sink's JSON lines on stdout.
bench_loader() {
    local name=$1 epochs=$2 port
    shift 2
    port=$(free_port)
    "$BUILD/bin/loader" "$@" --epochs "$epochs" --bind "tcp://127.0.0.1:$port" --control none --quiet \
        2>"$tmp/$name.log" &
    local lp=$!
    "$BUILD/tools/loader_sink" --connect "tcp://127.0.0.1:$port" --name "$name" | tee "$tmp/$name.json"
    wait "$lp" || { echo "loader_bench: loader failed on $name" >&2; cat "$tmp/$name.log" >&2; }
}

if [ -d "$CIFAR" ]; then
    find "$CIFAR" -type f -exec cat {} + >/dev/null
    bench_loader cifar10-jpeg 2 --data "$CIFAR"
    bench_loader cifar10-jpeg-1thread 1 --data "$CIFAR" --threads 1
    "$PY" "$here/loader_pil.py" --data "$CIFAR" --name cifar10-jpeg | tee "$tmp/pil.json"
    "$BUILD/tools/loader_steps" --data "$CIFAR" --limit 5000
    "$PY" - "$tmp/cifar10-jpeg.json" "$tmp/cifar10-jpeg-1thread.json" "$tmp/pil.json" <<'PYEOF'
import json, sys
def lines(p):
    return [json.loads(l) for l in open(p) if l.strip()]
loader, one, pil = lines(sys.argv[1]), lines(sys.argv[2]), lines(sys.argv[3])[0]
decode = loader[0]["images_per_s"]
cached = loader[1]["images_per_s"] if len(loader) > 1 else 0.0
print(json.dumps({"bench": "loader_targets", "dataset": "cifar10-jpeg",
                  "decode_epoch_images_per_s": round(decode, 1),
                  "decode_epoch_1thread_images_per_s": round(one[0]["images_per_s"], 1),
                  "pillow_images_per_s": pil["images_per_s"],
                  "decode_vs_pillow": round(decode / pil["images_per_s"], 2),
                  "decode_1thread_vs_pillow": round(one[0]["images_per_s"] / pil["images_per_s"], 2),
                  "cached_epoch_images_per_s": round(cached, 1),
                  "cached_vs_target_50000": round(cached / 50000.0, 2),
                  "decode_target_met": decode >= pil["images_per_s"], "cached_target_met": cached >= 50000}))
PYEOF
else
    echo "{\"bench\": \"loader\", \"skipped\": \"$CIFAR not present\"}"
fi

if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
    bench_loader fashion-mnist 2 --data "$FMNIST"
fi
