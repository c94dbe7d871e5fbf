#!/usr/bin/env bash
# The nn training-step benchmark: the C library and PyTorch on the same
# SimCLR step (mini-ResNet, 256 images = 512 views of 32x32), in one run,
# then one JSON line per width with the ratio. Run from the repository top
# (bench/run_all.sh does). Options: NN_BENCH_WIDTHS (default 16,32),
# NN_BENCH_STEPS (default 3), NN_BENCH_PROFILE=1 for per-layer lines.
set -euo pipefail
BUILD=${BUILD:-build}
widths=${NN_BENCH_WIDTHS:-16,32}
steps=${NN_BENCH_STEPS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prof=()
[ "${NN_BENCH_PROFILE:-0}" = 1 ] && prof=(--profile)
"$BUILD/tools/nn_bench" --width "$widths" --steps "$steps" "${prof[@]}" | tee "$tmp/c.json"
/usr/bin/python3 bench/nn_torch_bench.py --width "$widths" --steps "$steps" --threads 2 | tee "$tmp/torch.json"
/usr/bin/python3 - "$tmp/c.json" "$tmp/torch.json" <<'PY'
import json, sys
rows = lambda p: [json.loads(l) for l in open(p) if '"bench"' in l]
c = {r["width"]: r for r in rows(sys.argv[1])}
t = {r["width"]: r for r in rows(sys.argv[2])}
for w in sorted(c):
    if w in t:
        print(json.dumps({"bench": "nn_simclr_step_ratio", "width": w,
                          "c_images_per_s": c[w]["images_per_s"], "torch_images_per_s": t[w]["images_per_s"],
                          "ratio": round(c[w]["images_per_s"] / t[w]["images_per_s"], 2), "target": 2.0,
                          "c_share_of_sgemm": c[w]["share_of_sgemm"]}))
PY
