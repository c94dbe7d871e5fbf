#!/usr/bin/env bash
# Augmenter benchmarks for `make bench` (bench/run_all.sh runs bench/*_bench.sh):
#   1. microseconds per view against torchvision in the same run (augment_run.sh);
#   2. views/s of the real pipeline with 1 and 2 worker processes, where the
#      CPU went, and worker RSS, on the ImageNet sample at 224
#      (augment_scaling.py); the loader shrinks the photos to 256 px on their
#      long side (--max-side) so that shipping them costs little next to the
#      workers, whose scaling is what is measured;
#   3. what one libvips recipe step (vips:NAME, jpeg) adds to a view at 32 and
#      224, in CPU time, beside the fused built-in operation that does the
#      same (augment_bench --step-costs; AUG_SECONDS per case, default 3).
# JSON lines on stdout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bash "$here/augment_run.sh"
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
$pin "${BUILD:-build}/tools/augment_bench" --step-costs --seconds "${AUG_SECONDS:-3}" \
    --cifar "${CIFAR:-$root/../shared/data/cifar10-train}" --imagenet "${IMAGENET:-$root/../shared/data/imagenet-sample}"
/usr/bin/python3 "$here/augment_scaling.py" --build "${BUILD:-build}" --warmup 3 --seconds 10 --rss-at 4 12 \
    --loader-opt=--max-side=256
