#!/usr/bin/env bash
# Runs every benchmark script bench/*_bench.sh from the repository's top.
# Each prints JSON lines on stdout (one object per measurement, with the
# reference measured in the same run); progress goes to stderr.
# The first line, {"bench": "system"} (nn_bench --system), names the OpenBLAS
# kernel this project's programs run on and the CPU; every other JSON line gets
# the same two fields, "blas_kernel" and "cpu", unless it has them already
# (nn_bench's own lines). On the reference lines (torch, torchvision, Pillow)
# they name our kernel, not the one the reference library uses.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD="${BUILD:-build}"
system=$("$BUILD/tools/nn_bench" --system) ||
    { echo "bench: $BUILD/tools/nn_bench --system failed (make $BUILD/tools/nn_bench)" >&2; exit 1; }
echo "$system"

# tag: copies stdin to stdout, adding the system line's fields to each JSON
# object line that lacks them (the rest of the line is kept as it was written)
tag() {
    /usr/bin/python3 -u -c '
import json, sys
system = json.loads(sys.argv[1])
fields = {k: system[k] for k in ("blas_kernel", "cpu")}
for line in sys.stdin:
    body = line.rstrip("\n")
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        add = ", ".join(json.dumps(k) + ": " + json.dumps(v) for k, v in fields.items() if k not in obj)
        if add:
            body = body.rstrip()[:-1] + (", " if obj else "") + add + "}"
    sys.stdout.write(body + "\n")
' "$system"
}

status=0
for b in bench/*_bench.sh; do
    [ -e "$b" ] || continue
    echo "bench: $b" >&2
    bash "$b" | tag || { echo "bench: $b failed" >&2; status=1; }
done
exit $status
