#!/usr/bin/env bash
# Augmentation speed against torchvision, measured in the same run: runs
# build/tools/augment_bench and bench/augment_torchvision.py (Debian's python3,
# torchvision 0.14, one thread) on the same images, then prints one JSON line
# per case with both numbers and the ratio:
#   {"bench": "augment_vs_torchvision", "dataset": "cifar10", "size": 32,
#    "us_per_view": 3.3, "torchvision_us_per_view": 210.0, "speedup": 63.6,
#    "target_speedup": 20, "meets_target": true}
# Both run on one core (taskset) when taskset is available. Options are passed
# through: AUG_SECONDS (default 3) sets the time per case.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac
PY=/usr/bin/python3
SECONDS_PER_CASE=${AUG_SECONDS:-3}
CIFAR=${CIFAR:-$root/../shared/data/cifar10-train}
IMAGENET=${IMAGENET:-$root/../shared/data/imagenet-sample}

[ -x "$BUILD/tools/augment_bench" ] || { echo "augment_run: build $BUILD/tools/augment_bench first (make)" >&2; exit 1; }
"$PY" -c 'import torchvision' 2>/dev/null ||
    { echo "augment_run: $PY cannot import torchvision (apt-get install python3-torchvision)" >&2; exit 1; }

pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
tmp=$(mktemp -d /tmp/augment_run.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

$pin "$BUILD/tools/augment_bench" --cifar "$CIFAR" --imagenet "$IMAGENET" --seconds "$SECONDS_PER_CASE" \
    ${AUG_IDEAS:+--ideas} >"$tmp/ours.jsonl"
OMP_NUM_THREADS=1 $pin "$PY" "$here/augment_torchvision.py" --cifar "$CIFAR" --imagenet "$IMAGENET" \
    --seconds "$SECONDS_PER_CASE" >"$tmp/torchvision.jsonl"

"$PY" - "$tmp/ours.jsonl" "$tmp/torchvision.jsonl" <<'EOF'
import json, sys
# Issue targets: at least 20x torchvision on 32x32 CIFAR views, 3x on photos.
TARGET = {32: 20}
DEFAULT_TARGET = 3
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ref = {(r["dataset"], r["size"]): r for r in map(json.loads, open(sys.argv[2])) if r}
for r in ours:
    if r["impl"] != "augment":
        print(json.dumps(dict(r, bench="augment_idea")))
        continue
    t = ref.get((r["dataset"], r["size"]))
    if not t:
        continue
    speedup = t["us_per_view"] / r["us_per_view"]
    target = TARGET.get(r["size"], DEFAULT_TARGET)
    print(json.dumps({"bench": "augment_vs_torchvision", "dataset": r["dataset"], "size": r["size"],
                      "recipe": r["recipe"], "us_per_view": round(r["us_per_view"], 2),
                      "torchvision_us_per_view": round(t["us_per_view"], 2),
                      "speedup": round(speedup, 1), "target_speedup": target,
                      "meets_target": speedup >= target}))
EOF
