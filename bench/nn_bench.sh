#!/usr/bin/env bash
# The nn training-step benchmark: the C library and PyTorch on the same
# SimCLR step (mini-ResNet, 256 images = 512 views of 32x32), in one run,
# then one JSON line per width with the ratio. Run from the repository top
# (bench/run_all.sh does). Options: NN_BENCH_WIDTHS (default 16,32),
# NN_BENCH_STEPS (default 3), NN_BENCH_PROFILE=1 for per-layer lines,
# NN_BENCH_REPEAT (default 1): C and torch run alternately that many times
# and the ratio line compares the medians, so that a load change on a shared
# machine hits both sides. The C lines and the ratio line name the OpenBLAS
# kernel and the CPU ("blas_kernel", "cpu"); bench/run_all.sh adds them to the
# torch lines too (our kernel, not torch's).
set -euo pipefail
BUILD=${BUILD:-build}
widths=${NN_BENCH_WIDTHS:-16,32}
steps=${NN_BENCH_STEPS:-3}
repeat=${NN_BENCH_REPEAT:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prof=()
[ "${NN_BENCH_PROFILE:-0}" = 1 ] && prof=(--profile)
for ((r = 0; r < repeat; r++)); do
    "$BUILD/tools/nn_bench" --width "$widths" --steps "$steps" "${prof[@]}" | tee -a "$tmp/c.json"
    /usr/bin/python3 bench/nn_torch_bench.py --width "$widths" --steps "$steps" --threads 2 | tee -a "$tmp/torch.json"
done
/usr/bin/python3 - "$tmp/c.json" "$tmp/torch.json" <<'PY'
import json, statistics, sys
rows = lambda p: [json.loads(l) for l in open(p) if '"bench"' in l]
def by_width(p):
    out = {}
    for r in rows(p):
        out.setdefault(r["width"], []).append(r)
    return out
c, t = by_width(sys.argv[1]), by_width(sys.argv[2])
targets = {16: 2.0, 32: 2.5}   # the speed-ups aimed at (none for other widths)
for w in sorted(c):
    if w in t:
        ci = statistics.median(r["images_per_s"] for r in c[w])
        ti = statistics.median(r["images_per_s"] for r in t[w])
        print(json.dumps({"bench": "nn_simclr_step_ratio", "width": w, "runs": min(len(c[w]), len(t[w])),
                          "c_images_per_s": round(ci, 1), "torch_images_per_s": round(ti, 1),
                          "ratio": round(ci / ti, 2), "target": targets.get(w),
                          "ratios_per_run": [round(a["images_per_s"] / b["images_per_s"], 2)
                                             for a, b in zip(c[w], t[w])],
                          "c_share_of_sgemm": statistics.median(r["share_of_sgemm"] for r in c[w]),
                          "blas_kernel": c[w][0].get("blas_kernel"), "cpu": c[w][0].get("cpu")}))
PY
