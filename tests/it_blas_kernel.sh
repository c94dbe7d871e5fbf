#!/usr/bin/env bash
# The OpenBLAS kernel check every program does at start (nn/blas.h), seen
# through nntool embed (the same checkpoint and the same random images each
# time, its log line on stderr):
#  - a plain run names a kernel at the level this CPU's features allow
#    (AVX-512 F+BW+VL+DQ: SkylakeX, Cooperlake or SapphireRapids; AVX2+FMA:
#    Haswell, Zen or Excavator);
#  - OPENBLAS_CORETYPE=Prescott with NN_BLAS_OVERRIDE=1, the stand-in for an
#    OpenBLAS that does not know the CPU (cpuid cannot be faked), restarts once
#    and ends on the best kernel (SkylakeX, Haswell or Zen), as the plain run,
#    with the same embeddings;
#  - OPENBLAS_CORETYPE=Prescott alone stays on Prescott, logged as the user's
#    choice, and computes the same embeddings within float tolerance;
#  - a restarted process never restarts again, even when its kernel is still
#    the weak one (NN_BLAS_RESTARTED set by hand): it carries on and says so.
# Every run must exit 0 within its time limit with exactly one kernel line (a
# restart loop would hang or log more). A CPU without AVX2 and FMA has no
# better kernel to switch to: SKIP.
set -u
. "$(dirname "$0")/lib.sh"
TOOL="$BUILD/bin/nntool"
RUN_LIMIT=120            # seconds per nntool run (a few are enough)
TOLERANCE=1e-4           # largest |a - b| / max(1, |a|) between two runs' embeddings

require_built "$TOOL"

flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2-) "
has() { [[ "$flags" == *" $1 "* ]]; }
if has avx512f && has avx512bw && has avx512vl && has avx512dq; then
    features=avx512; best=SkylakeX; level='SkylakeX|Cooperlake|SapphireRapids'
elif has avx2 && has fma; then
    features=avx2; level='Haswell|Zen|Excavator'
    if grep -q -m1 '^vendor_id.*AuthenticAMD' /proc/cpuinfo; then best=Zen; else best=Haswell; fi
else
    skip "this CPU has neither AVX-512 nor AVX2+FMA: OpenBLAS has no better kernel to switch to"
fi
echo "CPU: $features (best kernel $best)"

"$TOOL" init --net resnet-mini --width 8 --head simclr --train-steps 2 --out "$tmp/ckpt.st" 2>"$tmp/init.err" ||
    { echo "FAIL: nntool init"; cat "$tmp/init.err"; exit 1; }

# embed NAME [VAR=VALUE...]: nntool embed of the checkpoint in a clean
# environment plus the given variables; stderr in $tmp/NAME.err, the
# embeddings in $tmp/NAME.st. Returns nntool's status (124: time limit).
embed() {
    local name=$1; shift
    timeout "$RUN_LIMIT" env -u OPENBLAS_CORETYPE -u NN_BLAS_OVERRIDE -u NN_BLAS_RESTARTED \
        -u NN_BLAS_USER_CORETYPE "$@" "$TOOL" embed "$tmp/ckpt.st" --images 8 --seed 3 \
        --out "$tmp/$name.st" 2>"$tmp/$name.err"
}

# line NAME: the run's kernel line, without the "nntool: " prefix
line() { sed -n 's/^nntool: \(OpenBLAS kernel .*\)$/\1/p' "$tmp/$1.err"; }
# kernel NAME: the kernel the run names
kernel() { line "$1" | sed -n 's/^OpenBLAS kernel \([^ ]*\) (.*/\1/p'; }

# ran NAME STATUS: the run exited 0 and logged exactly one kernel line
ran() {
    local name=$1 rc=$2 n
    n=$(grep -c 'OpenBLAS kernel' "$tmp/$name.err")
    if [ "$rc" -eq 124 ]; then fail "$name: still running after ${RUN_LIMIT}s (a restart loop?)"
    elif [ "$rc" -ne 0 ]; then fail "$name: nntool embed exit $rc"
    elif [ "$n" -ne 1 ]; then fail "$name: $n kernel lines, want 1"
    else return 0; fi
    sed 's/^/    stderr: /' "$tmp/$name.err" | tail -n 5
    return 1
}

# same NAME: the run's embeddings equal the plain run's within TOLERANCE
same() {
    local diff
    if diff=$("$PY" - "$tmp/plain.st" "$tmp/$1.st" "$TOLERANCE" <<'PY'
import array, json, math, struct, sys
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name != "__metadata__":
            a = array.array("f")
            a.frombytes(data[t["data_offsets"][0]:t["data_offsets"][1]])
            if sys.byteorder != "little":
                a.byteswap()
            out[name] = a
    return out
a, b, tol = tensors(sys.argv[1]), tensors(sys.argv[2]), float(sys.argv[3])
worst = 0.0
for name in ("input", "features", "output"):
    if name not in a or name not in b or len(a[name]) != len(b[name]):
        sys.exit(f"{name}: missing or of another size")
    for x, y in zip(a[name], b[name]):
        d = abs(x - y) / max(1.0, abs(x))
        if math.isnan(d) or d > tol:
            sys.exit(f"{name}: {x} against {y}")
        worst = max(worst, d)
print(f"{worst:.2g}")
PY
    ); then
        ok "$1: same embeddings as the plain run (largest difference $diff)"
    else
        fail "$1: embeddings differ from the plain run: $diff"
    fi
}

# ---- 1. plain run: the kernel OpenBLAS chose, or the one nntool switched to
rc=0; embed plain || rc=$?
ran plain "$rc" || { echo "it_blas_kernel: no plain run to compare with"; exit 1; }
plain=$(kernel plain)
if [[ "$plain" =~ ^($level)$ ]]; then ok "plain run: $(line plain)"
else fail "plain run: kernel '$plain', want one of $level: $(line plain)"; fi

# ---- 2. a weaker kernel corrected: one restart onto the best kernel
rc=0; embed forced OPENBLAS_CORETYPE=Prescott NN_BLAS_OVERRIDE=1 || rc=$?
if ran forced "$rc"; then
    got=$(kernel forced)
    if [ "$got" != "$best" ]; then fail "Prescott + NN_BLAS_OVERRIDE=1: kernel '$got', want $best: $(line forced)"
    elif ! line forced | grep -q 'switched'; then fail "Prescott + NN_BLAS_OVERRIDE=1: does not say it switched: $(line forced)"
    elif [ "$got" = "$plain" ]; then ok "Prescott + NN_BLAS_OVERRIDE=1: $(line forced), as the plain run"
    else ok "Prescott + NN_BLAS_OVERRIDE=1: $(line forced); the plain run's $plain is of the same level"; fi
    same forced
fi

# ---- 3. the user's choice is respected
rc=0; embed user OPENBLAS_CORETYPE=Prescott || rc=$?
if ran user "$rc"; then
    if [ "$(kernel user)" = Prescott ] && line user | grep -q "the user's choice"; then
        ok "OPENBLAS_CORETYPE=Prescott: $(line user)"
    else
        fail "OPENBLAS_CORETYPE=Prescott: want Prescott as the user's choice: $(line user)"
    fi
    same user
fi

# ---- 4. a restart that did not take: no second restart, a warning, results
rc=0; embed again OPENBLAS_CORETYPE=Prescott NN_BLAS_RESTARTED=Prescott || rc=$?
if ran again "$rc"; then
    if [ "$(kernel again)" = Prescott ] && line again | grep -q 'did not take'; then
        ok "restarted but still on Prescott: carries on without restarting again: $(line again)"
    else
        fail "restarted but still on Prescott: want Prescott and a warning: $(line again)"
    fi
    same again
fi

if [ "$failures" -ne 0 ]; then
    echo "it_blas_kernel: $failures failures"
    exit 1
fi
echo "it_blas_kernel: all passed"
