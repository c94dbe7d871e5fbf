#!/usr/bin/env bash
# run.sh through faults, as a user runs it (--no-build, Fashion-MNIST limited
# to N images, SimCLR width 8, 2 augmenter processes of 2 workers each, the
# loader with --exactly-once as run.sh starts it):
#  1. a worker of augmenter A is SIGKILLed (as the OOM killer does): A logs
#     how it died and starts a new one, and its final summary counts it;
#  2. the other augmenter, B, is SIGKILLed as a whole: its workers stop too,
#     and run.sh logs the exit status and starts B again under its name;
#  3. augmenter A and its workers are frozen (SIGSTOP) for STOP_S seconds,
#     then continued (SIGCONT).
# The run completes (run.sh exits 0) with steps 1..STEPS, and metrics.jsonl
# says every epoch is complete with exactly N distinct samples trained. At the
# end no process of the run is left.
set -u
. "$(dirname "$0")/lib.sh"

require_built "$BUILD/bin/loader" "$BUILD/bin/augmenter" "$BUILD/bin/trainer" "$BUILD/bin/evaluator" \
    "$BUILD/bin/nntool"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

N=4096
BATCH=128
EPOCHS=5
STEPS=$((N * EPOCHS / BATCH))
STOP_S=4
# The faults come in the first two epochs, at these steps or later: the
# trainer ends at step STEPS, so the backlog they leave (what the dead held is
# sent again, what the frozen one held comes late) must be trained by then.
STEP_WORKER=4
STEP_AUGMENTER=16
STEP_FREEZE=$((N / BATCH + 4))
run="$tmp/run"
log="$tmp/run.log"

# four consecutive free ports: loader, trainer, evaluator, control
port_base() {
    local base p
    for _ in $(seq 1 50); do
        base=$(free_port)
        [ "$base" -lt 65000 ] || continue
        for p in 1 2 3; do
            "$PY" -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $base + $p))" 2>/dev/null ||
                continue 2
        done
        echo "$base"
        return 0
    done
    return 1
}

# wait_steps N SECONDS: the trainer reached step N (fails at once when run.sh ended)
wait_steps() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ "$(steps_done "$run")" -ge "$1" ] && return 0
        kill -0 "$run_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# wait_log PATTERN SECONDS: an extended regular expression shows in the log
wait_log() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        grep -qE -- "$1" "$log" && return 0
        sleep 0.1
    done
    return 1
}

# children PID: the augmenter processes among PID's children (run.sh's
# augmenters, or an augmenter's workers; not the sed that prefixes its log)
children() {
    pgrep -P "$1" -f "$BUILD/bin/augmenter --connect" | sort -n
}

# check_epochs: steps 1..STEPS, and every epoch complete with N distinct samples
check_epochs() {
    "$PY" - "$run/metrics.jsonl" "$N" "$EPOCHS" "$STEPS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, epochs, steps = (int(a) for a in sys.argv[2:5])
steprows = [r for r in rows if "loss" in r]
assert [r["step"] for r in steprows] == list(range(1, steps + 1)), [r["step"] for r in steprows]
by_epoch = {r["epoch"]: r for r in rows if r.get("record") == "epoch"}
for e in range(epochs):
    r = by_epoch.get(e)
    assert r and r["complete"] and r["distinct"] == n and r["expected"] == n, (e, r)
# the trainer may close the epoch after the last as it stops: nothing in it
assert all(r["distinct"] == 0 for e, r in by_epoch.items() if e >= epochs), by_epoch
dups = sum(r["duplicates"] for r in by_epoch.values())
print(f"   epochs 0..{epochs - 1}: {n} distinct samples each, {dups} duplicate(s) dropped, steps 1..{steps}")
EOF
}

base=$(port_base) || { echo "FAIL: no four free ports"; exit 1; }
BUILD="$BUILD" "$root/run.sh" --no-build --width 8 --batch "$BATCH" --epochs "$EPOCHS" --augmenters 2 \
    --out "$run" --port-base "$base" --loader-opts "--limit $N" --augmenter-opts "--workers 2" \
    --evaluator-opts "--max-train 2000 --max-test 1000 --label-fraction 1 --finetune-per-class none" >"$log" 2>&1 &
run_pid=$!
pids+=("$run_pid")

# ---- 1. one worker of augmenter A killed ----
if wait_steps "$STEP_WORKER" 120; then
    read -r -a augs <<<"$(children "$run_pid" | tr '\n' ' ')"
    [ "${#augs[@]}" -eq 2 ] || fail "1: run.sh has ${#augs[@]} augmenter process(es), not 2"
    aug_a=${augs[0]} aug_b=${augs[1]:-}
    worker=$(children "$aug_a" | head -n 1)
    kill -KILL "$worker"
    ok "1: killed worker $worker of augmenter $aug_a with SIGKILL at step $(steps_done "$run")"
else
    fail "1: no $STEP_WORKER steps within 120 s"; tail -n 20 "$log"
fi
if wait_log "^\[augmenter[12]\] augmenter: worker [0-9]+ \(pid ${worker:-x}\) was killed by signal 9 \(Killed\); starting a new worker" 10 &&
    wait_log "^\[augmenter[12]\] augmenter: worker [0-9]+: started a new one \(pid [0-9]+\)" 10; then
    name_a=$(grep -oE "^\[augmenter[12]\] augmenter: worker [0-9]+ \(pid $worker\)" "$log" | grep -oE "augmenter[12]")
    ok "1: $name_a logged the dead worker and started a new one"
    sed -n "s/^\[$name_a\] augmenter: worker [0-9]*: started a new one/   &/p" "$log"
else
    fail "1: no dead worker and replacement in the log"; grep "^\[augmenter" "$log" | tail -n 5
fi
[ "$(children "${aug_a:-0}" | wc -l)" -eq 2 ] && ok "1: augmenter $aug_a runs 2 workers again" ||
    fail "1: augmenter $aug_a runs $(children "${aug_a:-0}" | wc -l) worker(s)"

# ---- 2. augmenter B killed as a whole ----
if wait_steps "$STEP_AUGMENTER" 120; then
    b_workers=$(children "$aug_b" | tr '\n' ' ')
    kill -KILL "$aug_b"
    ok "2: killed augmenter $aug_b with SIGKILL at step $(steps_done "$run")"
else
    fail "2: no $STEP_AUGMENTER steps within 120 s"; tail -n 20 "$log"
fi
left=0
for p in ${b_workers:-}; do gone "$p" 10 || left=$((left + 1)); done
[ -n "${b_workers:-}" ] && [ "$left" -eq 0 ] && ok "2: its workers ($b_workers) stopped with it" ||
    fail "2: $left of its workers (${b_workers:-none}) still running"
if wait_log "^run\.sh: augmenter[12] exited with status 137; restarting it \(restart 1 of 3\)$" 10; then
    ok "2: $(grep -E '^run\.sh: augmenter[12] exited with status 137' "$log")"
    name_b=$(grep -oE '^run\.sh: augmenter[12] exited' "$log" | grep -oE 'augmenter[12]')
    [ "$name_b" != "${name_a:-}" ] || fail "2: run.sh restarted $name_b, the augmenter not killed"
else
    fail "2: run.sh did not restart the augmenter"; grep "^run.sh" "$log"
fi
for _ in $(seq 1 50); do [ "$(children "$run_pid" | wc -l)" -eq 2 ] && break; sleep 0.1; done
new_b=$(children "$run_pid" | grep -vx "${aug_a:-0}")
[ -n "$new_b" ] && [ "$new_b" != "$aug_b" ] && ok "2: run.sh started augmenter $new_b in its place" ||
    fail "2: augmenters now: $(children "$run_pid" | tr '\n' ' ')"

# ---- 3. augmenter A frozen for a while, then continued ----
if wait_steps "$STEP_FREEZE" 120; then
    a_workers=$(children "$aug_a" | tr '\n' ' ')
    # shellcheck disable=SC2086
    kill -STOP "$aug_a" $a_workers
    at=$(steps_done "$run")
    sleep "$STOP_S"
    # shellcheck disable=SC2086
    kill -CONT $a_workers "$aug_a"
    ok "3: froze augmenter $aug_a and its workers for $STOP_S s at step $at (step $(steps_done "$run") after)"
else
    fail "3: no $STEP_FREEZE steps within 120 s"; tail -n 20 "$log"
fi

# ---- the run completes, every epoch exactly once ----
if gone "$run_pid" 420; then
    wait "$run_pid"; rc=$?
    [ "$rc" -eq 0 ] && ok "run.sh exited 0" || { fail "run.sh exit $rc"; tail -n 20 "$log"; }
else
    fail "run.sh still running after the faults and 420 s"; tail -n 20 "$log"
fi
check_epochs && ok "every epoch complete, $N distinct samples each" ||
    { fail "epoch records"; grep '"record"' "$run/metrics.jsonl"; }
grep -q "re-sending" "$log" && ok "the loader re-sent what the dead and frozen augmenters held:" ||
    fail "the loader logged no re-send"
grep -E "^\[loader\] loader: re-sending" "$log" | sed 's/^/   /' | head -n 5
grep -qE "^\[${name_a:-x}\] augmenter: (done|stopped|end of stream): .*, 1 worker\(s\) replaced$" "$log" &&
    ok "$name_a's summary counts the replaced worker" ||
    { fail "no summary of ${name_a:-augmenter A} with 1 replaced worker"; grep -E "^\[augmenter[12]\] augmenter: (done|stopped)" "$log"; }

sleep 1
left=$(pgrep -f -- "127\.0\.0\.1:$base|--out $run" | wc -l)
[ "$left" -eq 0 ] && ok "no process left" || { fail "$left process(es) left"; pgrep -af -- "127\.0\.0\.1:$base|--out $run"; }

if [ "$failures" -ne 0 ]; then
    echo "it_run_faults: $failures failure(s)"
    exit 1
fi
echo "it_run_faults: all passed"
