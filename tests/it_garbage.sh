#!/usr/bin/env bash
# Garbage on every socket of a running pipeline: it keeps training.
# Starts loader (Fashion-MNIST) + augmenter (2 workers) + trainer (RotNet,
# width 8, 150 steps) + evaluator (serving, bound; the trainer does not
# send it checkpoints so that no evaluation runs) on free loopback ports;
# once training runs, tests/garbage.py sends
#  (a) raw TCP: random bytes, ZMTP greetings cut short or followed by junk,
#      a frame declaring 2^63 bytes, an HTTP request - to every bound port
#      (loader PUSH, trainer PULL and PUB, evaluator PULL);
#  (b) ZMTP PUSH to the trainer's and the evaluator's PULL: random bytes,
#      cut and mutated messages, well-formed messages of the wrong type,
#      declared sizes beyond the bytes present, a multipart message;
#  (c) a SUB peer on the trainer's PUB and a PULL peer on the loader's PUSH
#      that read a little and leave.
# Then checks: the trainer reaches STEPS with a finite loss and exit 0, its
# summary counts at least the certainly-invalid messages as dropped and its
# log reports the drops; loader and augmenter exit 0 after STOP; the evaluator
# logged what it ignored, is still serving, and exits 0 on SIGTERM; no
# process died of a signal.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
EVAL="$BUILD/bin/evaluator"
STEPS=150

require_built "$LOADER" "$AUG" "$TRAINER" "$EVAL"
[ -f "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }
"$PY" -c 'import zmq, msgpack' 2>/dev/null || { echo "FAIL: $PY lacks zmq/msgpack (make deps)"; exit 1; }

lport=$(free_port); pull=$(free_port); ctl=$(free_port); evp=$(free_port)
run="$tmp/run"

timeout 90 "$TRAINER" --method rotnet --width 8 --batch 16 --steps "$STEPS" --ckpt-every 1000 \
    --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" --evaluator none --out "$run" --quiet \
    >"$tmp/trainer.out" 2>"$tmp/trainer.err" &
tp=$!
timeout 90 "$EVAL" --bind "tcp://127.0.0.1:$evp" --out "$tmp/eval" --max-train 500 --max-test 200 \
    >"$tmp/eval.out" 2>"$tmp/eval.err" &
ep=$!
timeout 90 "$LOADER" --data "$FMNIST" --epochs 0 --bind "tcp://127.0.0.1:$lport" \
    --control "tcp://127.0.0.1:$ctl" --quiet >"$tmp/loader.err" 2>&1 &
lp=$!
timeout 90 "$AUG" --connect "tcp://127.0.0.1:$lport" --push "tcp://127.0.0.1:$pull" \
    --control "tcp://127.0.0.1:$ctl" --workers 2 --batch 16 --size 28 --channels 1 --recipe rotnet --dtype u8 \
    --quiet >"$tmp/aug.err" 2>&1 &
ap=$!
pids+=("$tp" "$ep" "$lp" "$ap")

# training has started: the first metrics lines are written
for _ in $(seq 300); do
    [ "$(cat "$run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
    sleep 0.1
done
step_before=$(wc -l <"$run/metrics.jsonl" 2>/dev/null || echo 0)
[ "$step_before" -ge 3 ] && ok "training runs (step $step_before) before the garbage" ||
    { fail "no training step within 30 s"; tail -n 5 "$tmp/trainer.err" "$tmp/loader.err" "$tmp/aug.err"; }

"$PY" "$root/tests/garbage.py" --seed 7 \
    --raw "127.0.0.1:$lport" "127.0.0.1:$pull" "127.0.0.1:$ctl" "127.0.0.1:$evp" \
    --push-trainer "tcp://127.0.0.1:$pull" --push-evaluator "tcp://127.0.0.1:$evp" \
    --peer-sub "tcp://127.0.0.1:$ctl" --peer-pull "tcp://127.0.0.1:$lport" >"$tmp/garbage.json" 2>"$tmp/garbage.err"
rc=$?
[ "$rc" -eq 0 ] && ok "garbage sent: $(cat "$tmp/garbage.json")" || { fail "garbage.py exit $rc"; cat "$tmp/garbage.err"; }
invalid=$("$PY" -c "import json; print(json.load(open('$tmp/garbage.json'))['trainer']['invalid'])" 2>/dev/null || echo 1)
step_after=$(wc -l <"$run/metrics.jsonl" 2>/dev/null || echo 0)
echo "   (training went from step $step_before to $step_after while the garbage was sent)"

# every stage is still alive right after (the trainer may have finished: then it exited 0, checked below)
for p in "$ep:evaluator" "$lp:loader" "$ap:augmenter" "$tp:trainer"; do
    if kill -0 "${p%%:*}" 2>/dev/null; then ok "${p#*:} alive after the garbage"
    elif [ "${p#*:}" != trainer ]; then fail "${p#*:} gone right after the garbage"; fi
done

wait "$tp"
rc=$?
[ "$rc" -eq 0 ] && ok "trainer exit 0" || { fail "trainer exit $rc"; tail -n 20 "$tmp/trainer.err"; }
"$PY" - "$tmp/trainer.out" "$STEPS" "$invalid" <<'EOF' && ok "trainer: trained to step $STEPS, the malformed messages dropped and counted" || fail "trainer summary"
import json, math, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"   trainer summary: end {d['end']}, step {d['step']}, loss {d['loss']:.3f}, dropped {d['dropped']}"
      f" (at least {sys.argv[3]} certainly invalid were sent)")
assert d["end"] == "done" and d["step"] == int(sys.argv[2]), d
assert math.isfinite(d["loss"]) and d["dropped"] >= int(sys.argv[3]), d
EOF
grep -q "dropped .* message" "$tmp/trainer.err" && ok "trainer: the drops are logged: $(grep -m 1 "dropped .* message" "$tmp/trainer.err")" ||
    { fail "trainer: no drop in the log"; tail -n 5 "$tmp/trainer.err"; }

for p in "$lp:loader" "$ap:augmenter"; do
    pid=${p%%:*} name=${p#*:}
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    wait "$pid"
    rc=$?
    [ "$rc" -eq 0 ] && ok "$name exit 0 after STOP" || { fail "$name exit $rc"; tail -n 10 "$tmp/${name%ader}.err" 2>/dev/null; }
done

n_ign=$(grep -c "ignoring" "$tmp/eval.err")
if kill -0 "$ep" 2>/dev/null; then ok "evaluator still serving; $n_ign messages ignored with a reason"
else fail "evaluator died"; tail -n 10 "$tmp/eval.err"; fi
[ "$n_ign" -ge 30 ] && ok "evaluator: each bad message logged ($(grep -m 1 ignoring "$tmp/eval.err"))" ||
    fail "evaluator: only $n_ign messages logged as ignored"
pkill -TERM -P "$ep"   # the evaluator itself, not its timeout wrapper (which would die of the signal)
wait "$ep"
rc=$?
[ "$rc" -eq 0 ] && ok "evaluator exit 0 on SIGTERM" || { fail "evaluator exit $rc"; tail -n 10 "$tmp/eval.err"; }

if [ "$failures" -ne 0 ]; then
    echo "it_garbage: $failures failures"
    exit 1
fi
echo "it_garbage: all passed"
