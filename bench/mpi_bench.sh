#!/usr/bin/env bash
# Data-parallel training on this machine: the trainer's SimCLR step
# (build/tools/mpi_step_bench, resnet-mini width 16, global batch 256 of
# 32x32x3) in one process with 2 threads against 2 MPI ranks with 1 thread
# each (OPENBLAS_NUM_THREADS=1, NN_THREADS=1), per-rank and synchronised
# batch norm. One JSON line per run (images/s, the time per step inside the
# dist_* calls and the bytes each rank sends in them: gradients and
# embeddings), then one line comparing them; every line names the OpenBLAS
# kernel and the CPU. The time in the collectives includes waiting for the
# slower rank: on a machine other work shares, that is most of it (the last
# line gives the 1-minute load average at its end).
# Options: MPI_BENCH_STEPS (default 5), MPI_BENCH_WIDTH (default 16).
set -euo pipefail
BUILD=${BUILD:-build}
steps=${MPI_BENCH_STEPS:-5}
width=${MPI_BENCH_WIDTH:-16}
for f in "$BUILD/tools/mpi_step_bench" "$BUILD/tools/nn_bench"; do
    [ -x "$f" ] || { echo "mpi_bench: $f is not built (make; MPI needs libopenmpi-dev)" >&2; exit 1; }
done
command -v mpirun >/dev/null || { echo "mpi_bench: mpirun not found (make deps)" >&2; exit 1; }
mpi=(mpirun -np 2 --oversubscribe --mca mpi_yield_when_idle 1 -x OPENBLAS_NUM_THREADS -x NN_THREADS)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
system=$("$BUILD/tools/nn_bench" --system)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args=(--width "$width" --batch 256 --steps "$steps")
OPENBLAS_NUM_THREADS=2 NN_THREADS=2 "$BUILD/tools/mpi_step_bench" "${args[@]}" >>"$tmp/runs.json"
OPENBLAS_NUM_THREADS=1 NN_THREADS=1 "${mpi[@]}" "$BUILD/tools/mpi_step_bench" "${args[@]}" >>"$tmp/runs.json"
OPENBLAS_NUM_THREADS=1 NN_THREADS=1 "${mpi[@]}" "$BUILD/tools/mpi_step_bench" "${args[@]}" --sync-bn >>"$tmp/runs.json"
/usr/bin/python3 - "$tmp/runs.json" "$system" <<'PY'
import json, sys
system = json.loads(sys.argv[2])
tag = {k: system[k] for k in ("blas_kernel", "cpu")}
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in runs:
    print(json.dumps({**r, **tag}))
one = next(r for r in runs if r["ranks"] == 1)
two = next(r for r in runs if r["ranks"] == 2 and not r["sync_bn"])
print(json.dumps({"bench": "mpi_step_ratio", "one_process_2_threads_images_per_s": one["images_per_s"],
                  "two_ranks_1_thread_images_per_s": two["images_per_s"],
                  "ratio": round(two["images_per_s"] / one["images_per_s"], 2),
                  "comm_s_per_step": two["comm_s_per_step"], "comm_bytes_per_step": two["comm_bytes_per_step"],
                  "loadavg_1min": float(open("/proc/loadavg").read().split()[0]), **tag}))
PY
