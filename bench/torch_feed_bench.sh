#!/usr/bin/env bash
# The PyTorch trainer (examples/torch_trainer) fed by the augmenters, against
# the same trainer fed by a torchvision DataLoader with the same number of
# worker processes and torchvision's SimCLR chain (bench/torch_feed_dataloader.py).
#
# Both train the same network on two 224x224 views per image of the ImageNet sample
# photos (CIFAR-10 when the sample is absent), shrunk to 256 px first. The
# pipeline: loader (cached after the first epoch) -> one augmenter with
# --workers W (u8 views) -> torch_trainer.py. Prints one JSON line per case:
#   {"bench": "torch_feed", "feed": "sslpipe" | "torchvision", "workers": W, "views_per_s": ..,
#    "images_per_s": .., "data_wait": .., ...}
# and a ratio line per W. data_wait: the trainer's share of time waiting for a batch.
# The network (TORCH_FEED_ARCH) is by default a deliberately cheap one, "probe"
# (a 4x4 max-pool, one strided convolution, global pooling, the SimCLR
# projection), so that the feed, not the step, limits the rate; conv4,
# resnet-mini or torchvision:resnet18 measure the feed behind a real step.
# Environment: IMAGENET, CIFAR (as bench/augment_run.sh), TORCH_FEED_DATA (any image folder), TORCH_FEED_WORKERS ("1 2"), TORCH_FEED_STEPS (20),
# TORCH_FEED_BATCH (32), TORCH_FEED_SIZE (224), TORCH_FEED_ARCH (conv4), TORCH_FEED_WIDTH (4).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=/usr/bin/python3
DATA=${TORCH_FEED_DATA:-}
if [ -z "$DATA" ]; then
    for d in "${IMAGENET:-../shared/data/imagenet-sample}" "${CIFAR:-../shared/data/cifar10-train}"; do
        [ -d "$d" ] && { DATA=$d; break; }
    done
fi
[ -n "$DATA" ] && [ -d "$DATA" ] ||
    { echo "torch_feed_bench: no data (../shared/data/imagenet-sample or cifar10-train; or set IMAGENET, CIFAR or TORCH_FEED_DATA)" >&2; exit 1; }
WORKERS=${TORCH_FEED_WORKERS:-1 2}
STEPS=${TORCH_FEED_STEPS:-20}
BATCH=${TORCH_FEED_BATCH:-32}
SIZE=${TORCH_FEED_SIZE:-224}
ARCH=${TORCH_FEED_ARCH:-probe}
WIDTH=${TORCH_FEED_WIDTH:-4}
for f in "$BUILD/bin/loader" "$BUILD/bin/augmenter"; do
    [ -x "$f" ] || { echo "torch_feed_bench: $f is not built (make)" >&2; exit 1; }
done
"$PY" -c 'import torch, torchvision, zmq, msgpack' 2>/dev/null ||
    { echo "torch_feed_bench: $PY lacks torch/torchvision/zmq/msgpack (make deps; python3-torchvision is in DEB_BENCH)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/torch_feed_bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
if [ "$ARCH" = probe ]; then
    cat >"$tmp/probe.nn" <<NN
nn 1
# the feed benchmark's cheap network: the step costs little beside the data
input 3 $SIZE $SIZE
encoder
maxpool k=4 s=4
conv out=16 k=3 s=2 p=1 bias=0
bn
relu
gap
head
linear out=16 bias=0
bn
relu
linear out=128 bias=1
NN
    ARCH=$tmp/probe.nn
fi
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for w in $WORKERS; do
    lp=$(free_port); tp=$(free_port); cp=$(free_port)
    "$BUILD/bin/loader" --data "$DATA" --epochs 0 --max-side 256 --channels 3 --bind "tcp://127.0.0.1:$lp" \
        --control "tcp://127.0.0.1:$cp" --quiet >"$tmp/loader.$w.log" 2>&1 &
    pids+=($!)
    "$BUILD/bin/augmenter" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
        --workers "$w" --size "$SIZE" --channels 3 --recipe simclr --dtype u8 --batch 16 --quiet >"$tmp/aug.$w.log" 2>&1 &
    pids+=($!)
    rm -rf "$tmp/run"
    line=$("$PY" examples/torch_trainer/torch_trainer.py --method simclr --arch "$ARCH" --width "$WIDTH" \
        --batch "$BATCH" --steps "$STEPS" --threads 1 --device cpu --bind "tcp://127.0.0.1:$tp" \
        --control "tcp://127.0.0.1:$cp" --evaluator none --out "$tmp/run" --ckpt-every 100000 --quiet \
        2>"$tmp/trainer.$w.log" | tail -n 1) ||
        { echo "torch_feed_bench: the trainer failed:" >&2; tail -5 "$tmp/trainer.$w.log" >&2; exit 1; }
    ours=$("$PY" -c 'import json, sys
j = json.loads(sys.argv[1])
w, size, steps, batch, arch = sys.argv[2:7]
print(json.dumps({"bench": "torch_feed", "feed": "sslpipe", "workers": int(w), "size": int(size), "arch": arch,
                  "batch": int(batch), "steps": int(steps), "images_per_s": round(j["images_per_s"], 2),
                  "views_per_s": round(2 * j["images_per_s"], 2), "data_wait": round(j["data_wait"], 4),
                  "torch_threads": 1}))' "$line" "$w" "$SIZE" "$STEPS" "$BATCH" "$(basename "$ARCH") width $WIDTH")
    echo "$ours"
    sleep 1   # the trainer's STOP ends the loader and augmenter
    ref=$("$PY" bench/torch_feed_dataloader.py --data "$DATA" --workers "$w" --size "$SIZE" --batch "$BATCH" \
        --steps "$STEPS" --arch "$ARCH" --width "$WIDTH" --threads 1)
    echo "$ref"
    "$PY" -c 'import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"bench": "torch_feed_ratio", "workers": a["workers"],
                  "views_per_s_ratio": round(a["views_per_s"] / b["views_per_s"], 2) if b["views_per_s"] else None,
                  "data_wait_sslpipe": a["data_wait"], "data_wait_torchvision": b["data_wait"]}))' "$ours" "$ref"
done
