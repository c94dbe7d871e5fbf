#!/usr/bin/env bash
# A pretext task of one's own, end to end on a slice of Fashion-MNIST, on
# loopback with free ports: the real loader, the augmenter with a recipe of
# two ":target" items (flip:target, rotate:k=random:target: 2 x 4 = 8
# classes) and the trainer with --method pretext.
#  1. the trainer sizes its head from the classes the ViewBatches announce
#     (log line "pretext (8 classes)", `nntool info` says method pretext, the
#     checkpoint's head has 8 outputs), and the loss of the last steps falls
#     well below chance, ln 8;
#  2. the same trainer fed RotNet's recipe trains a 4-way head (the class
#     count comes from the data, not from a fixed table);
#  3. fed a recipe without targets (simclr), it trains nothing: every
#     ViewBatch is dropped with a message that says what to do.
. "$(dirname "$0")/lib.sh"

TRAINER="$BUILD/bin/trainer"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
NNTOOL="$BUILD/bin/nntool"
require_built "$TRAINER" "$LOADER" "$AUG" "$NNTOOL"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

N=3000                # training images
STEPS=150
LAST=30               # steps averaged for the final loss
CHANCE=$("$PY" -c 'import math; print(math.log(8))')
MAX_LOSS=$("$PY" -c 'import math; print(0.75 * math.log(8))')   # well below chance
RECIPE='views=2,crop:scale=0.5-1,flip:target,rotate:k=random:target'

# start_feed NAME RECIPE: a loader and one augmenter feeding
# tcp://127.0.0.1:$pull, listening for STOP on $ctl.
start_feed() {
    local name=$1 recipe=$2 lport
    lport=$(free_port)
    timeout 180 "$LOADER" --data "$FMNIST" --limit "$N" --epochs 0 --bind "tcp://127.0.0.1:$lport" \
        --control "tcp://127.0.0.1:$ctl" --quiet >"$tmp/$name.loader" 2>&1 &
    loader_pid=$!
    timeout 180 "$AUG" --connect "tcp://127.0.0.1:$lport" --push "tcp://127.0.0.1:$pull" \
        --control "tcp://127.0.0.1:$ctl" --recipe "$recipe" --size 28 --channels 1 --dtype u8 \
        --batch 32 --quiet >"$tmp/$name.aug" 2>&1 &
    aug_pid=$!
    pids+=("$loader_pid" "$aug_pid")
}

# ---- 1. eight classes from two target items ----
pull=$(free_port); ctl=$(free_port)
start_feed eight "$RECIPE"
timeout 180 "$TRAINER" --method pretext --arch resnet-mini --width 8 --batch 64 --steps "$STEPS" \
    --evaluator none --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" --out "$tmp/run" \
    --quiet >"$tmp/run.out" 2>"$tmp/run.log"
rc=$?
[ "$rc" -eq 0 ] && ok "pretext run: exit 0" || { fail "pretext run: exit $rc"; tail -n 5 "$tmp/run.log"; }
grep -q "pretext (8 classes)" "$tmp/run.log" && ok "the trainer took 8 classes from the ViewBatches" ||
    { fail "no 'pretext (8 classes)' line"; head -5 "$tmp/run.log"; }
# the head's last layer: 8 outputs (the checkpoint's safetensors header)
head_out=$("$PY" - "$tmp/run/latest" <<'EOF'
import json, re, struct, sys
f = open(sys.argv[1], "rb")
h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
last = max((int(m.group(1)), k) for k in h if (m := re.match(r"head\.layers\.(\d+)\.bias$", k)))
print(h[last[1]]["shape"][0])
EOF
)
if "$NNTOOL" info "$tmp/run/latest" >"$tmp/info.json" 2>&1 && grep -q '"method": *"pretext"' "$tmp/info.json" &&
    [ "$head_out" = 8 ]; then
    ok "nntool info: method pretext; the head has 8 outputs"
else
    fail "checkpoint: head outputs ${head_out:-unknown}, $(head -c 300 "$tmp/info.json")"
fi
if msg=$("$PY" - "$tmp/run/metrics.jsonl" "$STEPS" "$LAST" "$MAX_LOSS" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"record"' not in l]
n, last, limit = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert [s["step"] for s in steps] == list(range(1, n + 1)), "steps are not 1..%d" % n
first = sum(s["loss"] for s in steps[:10]) / 10
mean = sum(s["loss"] for s in steps[-last:]) / last
acc = sum(s["accuracy"] for s in steps[-last:]) / last
print("first 10 steps %.3f, last %d steps %.3f, batch accuracy %.2f" % (first, last, mean, acc))
sys.exit(0 if mean < limit else 1)
EOF
); then
    ok "loss falls below chance (ln 8 = ${CHANCE:0:5}): $msg"
else
    fail "loss: ${msg:-no metrics} (want the last $LAST steps below $MAX_LOSS)"
fi
gone "$loader_pid" 10 && gone "$aug_pid" 10 || fail "loader or augmenter still running after STOP"

# ---- 2. RotNet's recipe under --method pretext: four classes ----
pull=$(free_port); ctl=$(free_port)
start_feed four rotnet
timeout 180 "$TRAINER" --method pretext --arch conv4 --width 4 --batch 32 --steps 5 --evaluator none \
    --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" --out "$tmp/four" --quiet \
    >"$tmp/four.out" 2>"$tmp/four.log"
rc=$?
[ "$rc" -eq 0 ] && grep -q "pretext (4 classes)" "$tmp/four.log" &&
    ok "recipe rotnet under --method pretext: a 4-way head" ||
    { fail "recipe rotnet: exit $rc"; tail -n 5 "$tmp/four.log"; }
gone "$loader_pid" 10 && gone "$aug_pid" 10 || fail "loader or augmenter still running after STOP"

# ---- 3. a recipe without targets is refused, saying why ----
pull=$(free_port); ctl=$(free_port)
start_feed none simclr
timeout 20 "$TRAINER" --method pretext --arch conv4 --width 4 --batch 32 --steps 5 --evaluator none \
    --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" --out "$tmp/none" --quiet \
    >"$tmp/none.out" 2>"$tmp/none.log" &
none_pid=$!
pids+=("$none_pid")
for ((i = 0; i < 150; i++)); do
    grep -q "HINT: augmenter --recipe with ':target' items" "$tmp/none.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "0 classes announced, pretext needs 2 or more" "$tmp/none.log" &&
    ok "simclr's views are dropped: the log names the missing targets and the fix" ||
    { fail "no drop message for a recipe without targets"; cat "$tmp/none.log"; }
[ ! -e "$tmp/none/latest" ] && ok "nothing trained on them" || fail "a checkpoint from views without targets"
kill -TERM "$none_pid" 2>/dev/null
wait "$none_pid" 2>/dev/null

if [ "$failures" -ne 0 ]; then
    echo "it_pretext: $failures failures"
    exit 1
fi
echo "it_pretext: all passed"
