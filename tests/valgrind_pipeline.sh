#!/usr/bin/env bash
# A short pipeline with its C stages under valgrind (make valgrind-test):
# the loader reads the bad-input corpus (tests/data/bad/folder: good,
# converted and broken files, 2 epochs) and streams it to one augmenter
# (1 worker, a forked child that valgrind follows); a Python PULL in the
# trainer's place counts the ViewBatches. Both stages must exit 0: valgrind
# (given in $VALGRIND, with --error-exitcode=1) turns any memory error or
# definite/indirect leak into exit status 1.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
VALGRIND=${VALGRIND:-valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1}
DATA="$root/tests/data/bad/folder"
EXPECT=20   # 10 readable images x 2 epochs

require_built "$LOADER" "$AUG"
command -v valgrind >/dev/null || { echo "FAIL: valgrind missing (make deps)"; exit 1; }
export OPENBLAS_NUM_THREADS=1

lport=$(free_port); pull=$(free_port)
cat >"$tmp/sink.py" <<'PYEOF'
import sys, msgpack, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.PULL); s.bind(sys.argv[1])
n = 0
while s.poll(int(sys.argv[3]) * 1000):
    m = msgpack.unpackb(s.recv(), raw=False)
    if m.get("type") == "viewbatch":
        n += len(m["samples"])
        if n >= int(sys.argv[2]):
            break
print(n)
PYEOF
"$PY" "$tmp/sink.py" "tcp://127.0.0.1:$pull" "$EXPECT" 120 >"$tmp/sink.out" &
sp=$!
# shellcheck disable=SC2086
$VALGRIND --log-file="$tmp/vg-loader.%p" "$LOADER" --data "$DATA" --epochs 2 --threads 2 \
    --bind "tcp://127.0.0.1:$lport" --control none --quiet >"$tmp/loader.err" 2>&1 &
lp=$!
# shellcheck disable=SC2086
$VALGRIND --log-file="$tmp/vg-aug.%p" "$AUG" --connect "tcp://127.0.0.1:$lport" --push "tcp://127.0.0.1:$pull" \
    --control none --workers 1 --batch 4 --size 16 --channels 3 --quiet >"$tmp/aug.err" 2>&1 &
ap=$!
pids+=("$sp" "$lp" "$ap")

timeout 200 tail --pid="$ap" -f /dev/null
wait "$lp"; rl=$?
wait "$ap"; ra=$?
wait "$sp"
got=$(cat "$tmp/sink.out")
show() { for f in "$tmp"/vg-"$1".*; do grep -q "ERROR SUMMARY: [1-9]\|definitely lost: [1-9]\|indirectly lost: [1-9]" "$f" && sed 's/^/    /' "$f" | head -n 80; done; }
[ "$rl" -eq 0 ] && ok "loader under valgrind: exit 0, no errors, no leaks" || { fail "loader under valgrind: exit $rl"; show loader; tail -n 5 "$tmp/loader.err"; }
[ "$ra" -eq 0 ] && ok "augmenter (and its worker) under valgrind: exit 0, no errors, no leaks" || { fail "augmenter under valgrind: exit $ra"; show aug; tail -n 5 "$tmp/aug.err"; }
[ "$got" = "$EXPECT" ] && ok "the sink got $got augmented samples" || fail "the sink got ${got:-nothing}, expected $EXPECT"
echo "   valgrind logs: $(ls "$tmp" | grep -c '^vg-') processes"
if [ "$failures" -ne 0 ]; then
    echo "valgrind_pipeline: $failures failures"
    exit 1
fi
echo "valgrind_pipeline: all passed"
