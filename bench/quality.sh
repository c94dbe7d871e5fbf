#!/usr/bin/env bash
# What the encoder is worth for the time it costs: runs one named schedule of
# ./run.sh from start to end (training and the final evaluation) and prints
# one JSON line with the linear probe and kNN accuracy of the final
# checkpoint, its baselines, the wall time and the training rate, so that a
# later change can be checked against these numbers.
#
#   bash bench/quality.sh [SCHEDULE]      (default: default)
#
# Schedules:
#   default        ./run.sh with no options: SimCLR on Fashion-MNIST, tested on t10k
#   cifar10-hour   SimCLR on CIFAR-10 class folders, 5,000 images held out for
#                  testing, 60 minutes of training (run.sh --minutes 60: the
#                  trainer fits its schedule to the rate it measures, so the
#                  epochs depend on the CPU; only the final checkpoint is
#                  evaluated, so that the evaluator does not slow training),
#                  temperature 0.2, features read as the mean of ten views
#                  of each image (evaluator --feature-views flip-shift)
#   cifar10-2h     120 minutes at the default temperature (0.5), the same
#                  features
#   rotnet-hour    RotNet on the same data, 60 minutes of training (4
#                  rotations of each image), only the final checkpoint evaluated
# CIFAR-10 is read from $QUALITY_CIFAR (default ../shared/data/cifar10-train);
# the default schedule needs only Debian's Fashion-MNIST. QUALITY_OUT keeps
# the run folder (default: a temporary one, removed at the end).
# Not part of make bench: a schedule takes from minutes to hours.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=/usr/bin/python3
schedule=${1:-default}
cifar=${QUALITY_CIFAR:-../shared/data/cifar10-train}

case "$schedule" in
default) args=() ;;
cifar10-hour) args=(--data "$cifar" --width 32 --minutes 60 --trainer-opts "--ckpt-every 100000 --tau 0.2"
                    --evaluator-opts "--feature-views flip-shift") ;;
cifar10-2h) args=(--data "$cifar" --width 32 --minutes 120 --trainer-opts "--ckpt-every 100000"
                  --evaluator-opts "--feature-views flip-shift") ;;
rotnet-hour) args=(--data "$cifar" --method rotnet --width 32 --minutes 60 --trainer-opts "--ckpt-every 100000") ;;
-h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "quality: unknown schedule '$schedule' (default, cifar10-hour, cifar10-2h, rotnet-hour)" >&2; exit 2 ;;
esac
case "$schedule" in cifar10-* | rotnet-*)
    [ -d "$cifar" ] || { echo "quality: $cifar is missing (set QUALITY_CIFAR to CIFAR-10 class folders)" >&2; exit 2; } ;;
esac

out=${QUALITY_OUT:-}
keep=1
if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/quality.XXXXXX)/run
    keep=0
fi
make -s deps >&2
make -s -j"$(nproc)" all >/dev/null
start=$(date +%s.%N)
BUILD=$BUILD ./run.sh --no-build --out "$out" "${args[@]}" >"$out.log" 2>&1 ||
    { echo "quality: run.sh failed; its log: $out.log" >&2; tail -n 20 "$out.log" >&2; exit 1; }
end=$(date +%s.%N)
system=$("$BUILD/tools/nn_bench" --system 2>/dev/null)
"$PY" - "$schedule" "$out" "$start" "$end" "$system" <<'EOF'
import json, sys
schedule, out, start, end, system = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ev = [json.loads(l) for l in open(out + "/eval.jsonl") if l.strip()]
last = max(ev, key=lambda r: r["step"])
steps = [json.loads(l) for l in open(out + "/metrics.jsonl") if '"loss"' in l]
train_s = steps[-1]["time"] - steps[0]["time"] if len(steps) > 1 else 0.0
b = last.get("baselines", {})
rec = {
    "bench": "quality", "schedule": schedule, "method": last.get("method"),
    "probe_top1": last.get("probe_top1"), "knn_top1": last.get("knn_top1"),
    "raw_pixels_probe_top1": b.get("raw_pixels", {}).get("probe", {}).get("top1"),
    "random_encoder_probe_top1": b.get("random_encoder", {}).get("probe", {}).get("top1"),
    "readout": last.get("encoder", {}).get("readout"), "views": last.get("encoder", {}).get("views"),
    "step": last["step"],
    "wall_s": round(end - start, 1), "train_s": round(train_s, 1),
    "images_per_s": round(sum(s["images_per_s"] for s in steps[len(steps) // 2:]) / max(1, len(steps) - len(steps) // 2), 1),
    "eval_s": last.get("seconds"),
}
rec.update({k: v for k, v in json.loads(system).items() if k != "bench"})
print(json.dumps(rec))
EOF
[ "$keep" -eq 1 ] || rm -rf "$(dirname "$out")"
