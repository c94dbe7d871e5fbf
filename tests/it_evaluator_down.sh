#!/usr/bin/env bash
# The evaluator down or slow does not hold training up, and when it comes
# back it evaluates the newest checkpoint first.
#  1. loader + augmenter + trainer (RotNet on Fashion-MNIST, width 8, STEPS
#     steps, a checkpoint every CKPT steps) with --evaluator on a port where
#     nothing listens. Once the step-START_AT checkpoint exists, the evaluator
#     starts: the first checkpoint it evaluates is the newest at that moment
#     or a later one, never an older one.
#  2. After its first evaluation it is stopped (SIGSTOP: a slow evaluator)
#     while the trainer runs on to the end; then continued (SIGCONT): the next
#     checkpoint it evaluates is the final one.
# Training must finish (exit 0, step STEPS). The trainer's median images/s
# with the evaluator absent, busy and stopped is printed, not asserted on.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
EVAL="$BUILD/bin/evaluator"
STEPS=200
CKPT=10
START_AT=30

require_built "$LOADER" "$AUG" "$TRAINER" "$EVAL"
[ -f "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

lport=$(free_port); pull=$(free_port); ctl=$(free_port); evp=$(free_port)
run="$tmp/run"
ckpt_step() { readlink "$run/latest" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.safetensors$/\1/p'; }
n_evals() { cat "$tmp/eval/eval.jsonl" 2>/dev/null | wc -l; }
eval_step() { sed -n "${1}p" "$tmp/eval/eval.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["step"])'; }

timeout 120 "$TRAINER" --method rotnet --width 8 --batch 16 --steps "$STEPS" --ckpt-every "$CKPT" --keep 100 \
    --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" --evaluator "tcp://127.0.0.1:$evp" \
    --out "$run" --quiet >"$tmp/trainer.out" 2>"$tmp/trainer.err" &
tp=$!
timeout 120 "$LOADER" --data "$FMNIST" --epochs 0 --bind "tcp://127.0.0.1:$lport" \
    --control "tcp://127.0.0.1:$ctl" --quiet >"$tmp/loader.err" 2>&1 &
lp=$!
timeout 120 "$AUG" --connect "tcp://127.0.0.1:$lport" --push "tcp://127.0.0.1:$pull" \
    --control "tcp://127.0.0.1:$ctl" --workers 2 --batch 16 --size 28 --channels 1 --recipe rotnet --dtype u8 \
    --quiet >"$tmp/aug.err" 2>&1 &
ap=$!
pids+=("$tp" "$lp" "$ap")

# ---- 1. no evaluator until the step-START_AT checkpoint
for _ in $(seq 600); do
    s=$(ckpt_step); [ -n "$s" ] && [ "$s" -ge "$START_AT" ] && break
    kill -0 "$tp" 2>/dev/null || break
    sleep 0.1
done
absent_until=$(cat "$run/metrics.jsonl" 2>/dev/null | wc -l)
newest=$(ckpt_step)
[ -n "$newest" ] && [ "$newest" -ge "$START_AT" ] && ok "trained to step $absent_until with no evaluator listening" ||
    { fail "no step-$START_AT checkpoint within 60 s"; tail -n 5 "$tmp/trainer.err"; }
timeout 120 "$EVAL" --bind "tcp://127.0.0.1:$evp" --out "$tmp/eval" --max-train 300 --max-test 100 \
    --no-baselines --no-report --attention 0 --label-fraction 1 --probe-iters 30 --align-items 50 --knn-k 20 \
    >"$tmp/eval.out" 2>"$tmp/eval.err" &
ep=$!
pids+=("$ep")
for _ in $(seq 50); do evpid=$(pgrep -P "$ep"); [ -n "$evpid" ] && break; sleep 0.1; done
evpid=${evpid:-$ep}   # the evaluator itself (signals to its timeout wrapper would not reach it)
echo "   evaluator started; the newest checkpoint then is step $newest"
for _ in $(seq 600); do [ "$(n_evals)" -ge 1 ] && break; kill -0 "$ep" 2>/dev/null || break; sleep 0.1; done
kill -STOP "$evpid" 2>/dev/null
stopped_at=$(cat "$run/metrics.jsonl" | wc -l)
stopped_ckpt=$(ckpt_step)   # it may have started on a checkpoint up to this one before the SIGSTOP
if [ "$(n_evals)" -ge 1 ]; then
    first=$(eval_step 1)
    [ "$first" -ge "$newest" ] && ok "first evaluation is of step $first (newest at the evaluator's start: $newest)" ||
        fail "first evaluation is of step $first, older than the newest checkpoint $newest"
else
    fail "the evaluator evaluated nothing within 60 s"; tail -n 10 "$tmp/eval.err"
fi

# ---- 2. the evaluator stopped (SIGSTOP) while training runs to the end
wait "$tp"
rc=$?
[ "$rc" -eq 0 ] && ok "trainer exit 0 with the evaluator stopped" || { fail "trainer exit $rc"; tail -n 10 "$tmp/trainer.err"; }
"$PY" -c "
import json; d = json.loads(open('$tmp/trainer.out').read().strip().splitlines()[-1])
assert d['end'] == 'done' and d['step'] == $STEPS, d" && ok "training finished at step $STEPS, not held up" ||
    { fail "trainer did not finish"; tail -n 2 "$tmp/trainer.out"; }
final=$(ckpt_step)
kill -CONT "$evpid"
# after SIGCONT it may finish the checkpoint it was on (step <= $stopped_ckpt); the
# first newer one it evaluates must be the final one, not one queued before it
next_new() {
    local i
    for ((i = 2; i <= $(n_evals); i++)); do
        local s; s=$(eval_step "$i")
        [ "$s" -gt "$stopped_ckpt" ] && { echo "$s"; return; }
    done
}
for _ in $(seq 600); do [ -n "$(next_new)" ] && break; kill -0 "$ep" 2>/dev/null || break; sleep 0.1; done
second=$(next_new)
evaluated=$(for ((i = 1; i <= $(n_evals); i++)); do eval_step "$i"; done | tr '\n' ' ')
if [ -z "$second" ]; then fail "no evaluation after step $stopped_ckpt within 60 s of SIGCONT"; tail -n 10 "$tmp/eval.err"
elif [ "$second" -eq "$final" ]; then
    ok "after SIGCONT the first checkpoint newer than step $stopped_ckpt evaluated is the final one, step $final (evaluated: $evaluated)"
else fail "after SIGCONT it evaluated step $second before the final $final (evaluated: $evaluated)"; fi
kill -TERM "$evpid"; wait "$ep"
for p in "$lp" "$ap"; do wait "$p" || fail "loader/augmenter exit $?"; done

"$PY" - "$run/metrics.jsonl" "$absent_until" "$stopped_at" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
a, s = int(sys.argv[2]), int(sys.argv[3])
def med(r):
    v = [x["images_per_s"] for x in r if "images_per_s" in x]
    return statistics.median(v) if v else float("nan")
print(f"   trainer median images/s: evaluator absent (steps 1-{a}) {med(rows[:a]):.0f}, "
      f"evaluating (steps {a + 1}-{s}) {med(rows[a:s]):.0f}, stopped (steps {s + 1}-{len(rows)}) {med(rows[s:]):.0f}")
EOF

if [ "$failures" -ne 0 ]; then
    echo "it_evaluator_down: $failures failures"
    exit 1
fi
echo "it_evaluator_down: all passed"
