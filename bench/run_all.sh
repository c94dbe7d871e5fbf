#!/usr/bin/env bash
# Runs every benchmark script bench/*_bench.sh from the repository's top.
# Each prints JSON lines on stdout (one object per measurement, with the
# reference measured in the same run); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD="${BUILD:-build}"
status=0
for b in bench/*_bench.sh; do
    [ -e "$b" ] || continue
    echo "bench: $b" >&2
    bash "$b" || { echo "bench: $b failed" >&2; status=1; }
done
exit $status
