#!/usr/bin/env bash
# End-to-end training speed against the trainer alone: the same SimCLR step
# (mini-ResNet width PIPE_WIDTH, batch 256 images of 32x32) measured by
# build/tools/nn_bench on synthetic input, then by the real pipeline (loader on
# CIFAR-10 JPEGs -> 1 or 2 augmenters -> trainer) for PIPE_STEPS steps. Prints
# one JSON line per case with images/s, the share of the trainer-alone rate
# and the trainer's data wait (share of step time spent waiting for batches).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CIFAR=../shared/data/cifar10-train
WIDTH=${PIPE_WIDTH:-16}
STEPS=${PIPE_STEPS:-40}
BATCH=256
PY=/usr/bin/python3
[ -d "$CIFAR" ] || { echo "pipeline_bench: $CIFAR is missing" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

alone=$("$BUILD/tools/nn_bench" --width "$WIDTH" --images "$BATCH" --steps 5 | grep '"bench"' | tail -n 1)
alone_rate=$(echo "$alone" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])')
echo "{\"bench\":\"pipeline\",\"case\":\"trainer_alone_synthetic\",\"width\":$WIDTH,\"images_per_s\":$alone_rate}"

for augmenters in 1 2; do
    lp=$(port); tp=$(port); cp=$(port)
    pids=()
    "$BUILD/bin/loader" --data "$CIFAR" --epochs 0 --bind "tcp://127.0.0.1:$lp" \
        --control "tcp://127.0.0.1:$cp" --quiet 2>"$tmp/loader.log" &
    pids+=($!)
    for i in $(seq 1 "$augmenters"); do
        "$BUILD/bin/augmenter" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" \
            --control "tcp://127.0.0.1:$cp" --seed "$i" --quiet 2>"$tmp/aug$i.log" &
        pids+=($!)
    done
    "$BUILD/bin/trainer" --method simclr --width "$WIDTH" --batch "$BATCH" --steps "$STEPS" \
        --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" --evaluator none \
        --out "$tmp/run$augmenters" --quiet >"$tmp/trainer.json" 2>"$tmp/trainer.log" ||
        { echo "pipeline_bench: the trainer failed:" >&2; tail -5 "$tmp/trainer.log" >&2; exit 1; }
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$PY" - "$tmp/run$augmenters/metrics.jsonl" "$augmenters" "$alone_rate" "$WIDTH" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]   # steps, not epoch records
steady = rows[len(rows) // 4:]          # leave out the start-up steps
secs = steady[-1]["time"] - steady[0]["time"]
rate = 256 * (len(steady) - 1) / secs
wait = sum(r["data_wait"] for r in steady) / len(steady)
alone = float(sys.argv[3])
print(json.dumps({"bench": "pipeline", "case": "loader+augmenters+trainer", "augmenters": int(sys.argv[2]),
                  "width": int(sys.argv[4]), "steps_measured": len(steady) - 1,
                  "images_per_s": round(rate, 1), "share_of_trainer_alone": round(rate / alone, 3),
                  "data_wait": round(wait, 4), "targets": {"share_of_trainer_alone": 0.95, "data_wait": 0.02}}))
PY
done
