#!/usr/bin/env bash
# Supervised training end to end on a slice of Fashion-MNIST, on loopback
# with free ports: the real loader, the augmenter with --recipe supervised
# and the trainer with --method supervised.
#  1. resnet-mini width 8, batch 64: 200 steps with the control socket off
#     (so that the loader and the augmenter keep running), then --resume
#     latest to 300 steps. Checks: metrics hold steps 1..300 once each, each
#     with a batch accuracy; the summary's train accuracy is well above
#     chance; a resume asking for another --classes exits 2; `nntool info`
#     says method supervised; the evaluator opens the checkpoint (classifier
#     head) and its linear probe on the encoder's features reaches 60% (chance
#     is 10%); the trainer's STOP ends the loader and the augmenter.
#  2. --classes 5 on one epoch of 1,000 images: the samples labeled 5..9 are
#     skipped, counted exactly (against the IDX label file), logged with a
#     hint, recorded in the epoch record, and training runs on the others.
. "$(dirname "$0")/lib.sh"

TRAINER="$BUILD/bin/trainer"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
NNTOOL="$BUILD/bin/nntool"
EVALUATOR="$BUILD/bin/evaluator"
require_built "$TRAINER" "$LOADER" "$AUG" "$NNTOOL" "$EVALUATOR"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

N=5000              # training images of part 1
FIRST_STEPS=200
STEPS=300
MIN_PROBE=0.60      # chance is 0.10
MIN_TRAIN_ACC=0.50
N_SKIP=1000         # images of part 2
SKIP_CLASSES=5

# start_feed NAME "LOADER ARGS": a loader and one augmenter (recipe
# supervised) feeding tcp://127.0.0.1:$pull, listening for STOP on $ctl.
start_feed() {
    local name=$1 largs=$2 lport
    lport=$(free_port)
    # shellcheck disable=SC2086
    timeout 120 "$LOADER" --data "$FMNIST" $largs --bind "tcp://127.0.0.1:$lport" \
        --control "tcp://127.0.0.1:$ctl" --quiet >"$tmp/$name.loader" 2>&1 &
    loader_pid=$!
    timeout 120 "$AUG" --connect "tcp://127.0.0.1:$lport" --push "tcp://127.0.0.1:$pull" \
        --control "tcp://127.0.0.1:$ctl" --recipe supervised --size 28 --channels 1 --dtype u8 \
        --batch 32 --quiet >"$tmp/$name.aug" 2>&1 &
    aug_pid=$!
    pids+=("$loader_pid" "$aug_pid")
}

# jlast FILE EXPR: EXPR (Python) on d, the JSON object of FILE's last line
jlast() {
    "$PY" -c "import json,sys; d=json.loads(open('$1').read().strip().splitlines()[-1]); sys.exit(0 if ($2) else 1)" \
        2>/dev/null
}

# ---- 1. train, resume, evaluate ----
pull=$(free_port); ctl=$(free_port)
run="$tmp/run"
start_feed main "--limit $N --epochs 0"
common=(--method supervised --arch resnet-mini --width 8 --batch 64 --ckpt-every 100 --evaluator none
    --bind "tcp://127.0.0.1:$pull" --out "$run" --quiet)
timeout 120 "$TRAINER" "${common[@]}" --steps "$STEPS" --control none >"$tmp/first.out" 2>"$tmp/first.log" &
first_pid=$!
pids+=("$first_pid")
# stop it by SIGTERM at step 200 (or let it end there when it is quick)
for ((i = 0; i < 900; i++)); do
    [ -e "$run/ckpt-00000200.safetensors" ] && break
    kill -0 "$first_pid" 2>/dev/null || break
    sleep 0.1
done
kill -TERM "$first_pid" 2>/dev/null
wait "$first_pid"; rc=$?
step=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$tmp/first.out" | tail -n 1)
if [ "$rc" -eq 0 ] && [ "${step:-0}" -ge "$FIRST_STEPS" ] && [ "${step:-0}" -lt "$STEPS" ]; then
    ok "first run: stopped at step $step, checkpoint written"
else
    fail "first run: exit $rc at step ${step:-none}"; tail -n 5 "$tmp/first.log"
fi

"$TRAINER" "${common[@]}" --resume latest --classes 5 --control none >/dev/null 2>"$tmp/badclasses.log"
rc=$?
[ "$rc" -eq 2 ] && grep -q "the head has 10 outputs, --classes is 5" "$tmp/badclasses.log" &&
    ok "resuming with another --classes exits 2 and names both" ||
    { fail "resume with --classes 5: exit $rc"; cat "$tmp/badclasses.log"; }

timeout 120 "$TRAINER" "${common[@]}" --resume latest --steps "$STEPS" --control "tcp://127.0.0.1:$ctl" \
    >"$tmp/second.out" 2>"$tmp/second.log"
rc=$?
if [ "$rc" -eq 0 ] && jlast "$tmp/second.out" "d['end'] == 'done' and d['step'] == $STEPS"; then
    ok "resumed run: done at step $STEPS"
else
    fail "resumed run: exit $rc"; tail -n 5 "$tmp/second.log" "$tmp/second.out"
fi
grep -q "supervised (10 classes)" "$tmp/second.log" &&
    ok "the resumed run took its 10 classes from the checkpoint" ||
    { fail "resumed run: no 'supervised (10 classes)' line"; head -5 "$tmp/second.log"; }
acc=$("$PY" -c "import json; print(json.loads(open('$tmp/second.out').read().splitlines()[-1])['train_accuracy'])" \
    2>/dev/null)
jlast "$tmp/second.out" "d['train_accuracy'] >= $MIN_TRAIN_ACC" &&
    ok "train accuracy at the end: ${acc} (mean of the last 20 batches, chance 0.10)" ||
    fail "train accuracy ${acc:-missing} < $MIN_TRAIN_ACC"
if "$PY" - "$run/metrics.jsonl" "$STEPS" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"record"' not in l]
got = [s["step"] for s in steps]
want = list(range(1, int(sys.argv[2]) + 1))
assert got == want, "steps %s..%s, %d lines" % (got[:1], got[-1:], len(got))
assert all(0 <= s["accuracy"] <= 1 for s in steps), "a step without a batch accuracy"
EOF
then ok "metrics: steps 1..$STEPS once each, each with its batch accuracy"
else fail "metrics.jsonl"
fi

if "$NNTOOL" info "$run/latest" >"$tmp/info.json" 2>&1 && jlast "$tmp/info.json" "d['method'] == 'supervised'"; then
    ok "nntool info: method supervised, step $STEPS"
else
    fail "nntool info: $(cut -c 1-200 "$tmp/info.json")"
fi

if gone "$loader_pid" 10 && gone "$aug_pid" 10; then
    ok "STOP ended the loader and the augmenter"
else
    fail "loader or augmenter still running after the trainer's STOP"
fi

mkdir -p "$tmp/eval"
timeout 120 "$EVALUATOR" --checkpoint "$run/latest" --out "$tmp/eval" --max-train 2000 --max-test 500 \
    --label-fraction 1 --no-baselines --no-report --attention 0 >"$tmp/eval.out" 2>"$tmp/eval.log"
rc=$?
probe=$("$PY" -c "import json; print(json.loads(open('$tmp/eval/eval.jsonl').read().splitlines()[-1])['probe_top1'])" \
    2>/dev/null)
if [ "$rc" -eq 0 ] && jlast "$tmp/eval/eval.jsonl" "d['method'] == 'supervised' and d['probe_top1'] >= $MIN_PROBE"; then
    ok "evaluator: linear probe on the encoder's features ${probe} on 500 test images (chance 0.10)"
else
    fail "evaluator: exit $rc, probe ${probe:-missing} (want >= $MIN_PROBE)"; tail -n 5 "$tmp/eval.log"
fi

# ---- 2. labels outside --classes are skipped ----
pull=$(free_port); ctl=$(free_port)
start_feed skip "--limit $N_SKIP --epochs 1"
timeout 120 "$TRAINER" --method supervised --classes "$SKIP_CLASSES" --arch conv4 --width 4 --batch 32 \
    --epochs 1 --evaluator none --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" \
    --out "$tmp/skip" --quiet >"$tmp/skip.out" 2>"$tmp/skip.log"
rc=$?
want=$("$PY" - "$FMNIST/train-labels-idx1-ubyte.gz" "$N_SKIP" "$SKIP_CLASSES" <<'EOF'
import gzip, sys
labels = gzip.open(sys.argv[1]).read()[8:8 + int(sys.argv[2])]
print(sum(1 for x in labels if x >= int(sys.argv[3])))
EOF
)
[ "$rc" -eq 0 ] && ok "--classes $SKIP_CLASSES: trainer exited 0" || { fail "--classes $SKIP_CLASSES: exit $rc"; tail -n 5 "$tmp/skip.log"; }
jlast "$tmp/skip.out" "d['skipped'] == $want and d['step'] > 0" &&
    ok "$want of $N_SKIP samples skipped (labels $SKIP_CLASSES..9), the others trained" ||
    fail "skipped: $(tail -n 1 "$tmp/skip.out") (want $want)"
grep -q "skipped [0-9]* sample(s) so far whose label is missing (-1) or outside 0..4" "$tmp/skip.log" &&
    grep -q "HINT: --classes N must exceed the largest label" "$tmp/skip.log" &&
    ok "the log says what was skipped and why" || { fail "no skip line in the log"; cat "$tmp/skip.log"; }
grep -q '"record":"epoch","epoch":0,.*"skipped":'"$want" "$tmp/skip/metrics.jsonl" &&
    ok "the epoch record counts them" || { fail "epoch record"; grep '"record"' "$tmp/skip/metrics.jsonl"; }

if [ "$failures" -ne 0 ]; then
    echo "it_supervised: $failures failures"
    exit 1
fi
echo "it_supervised: all passed"
