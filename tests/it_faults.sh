#!/usr/bin/env bash
# Faults, on loopback with free ports: Fashion-MNIST limited to 2048 images,
# SimCLR width 8, batch 256, 5 epochs (40 steps), the loader with
# --exactly-once, two augmenter processes.
#  a. One augmenter (parent and worker) is SIGKILLed mid-epoch, and another
#     one started a little later. Training goes on; the loader logs re-sends;
#     the trainer ends at step 40 and metrics.jsonl says every epoch is
#     complete with 2048 distinct samples trained; the longest pause between
#     two steps is printed and checked against a generous bound.
#  b. The loader is SIGKILLed mid-run and started again: it continues at the
#     trainer's epoch, and the run ends the same way (40 steps, 5 complete
#     epochs of 2048 distinct samples).
#  c. The trainer writes a checkpoint every step and is SIGKILLed KILLS times
#     at random moments (so also while writing), resumed with --resume latest
#     each time: after every kill `latest` and every kept checkpoint load
#     (nntool info), their state files parse, and no temporary file is taken
#     for a checkpoint; a last resume runs to the end.
#  d. Exactly once across trainer restarts: the trainer (a checkpoint every
#     CKPT_D steps) is SIGKILLed twice mid-epoch, some steps after its last
#     checkpoint, and resumed with --resume latest each time, while the loader
#     (--exactly-once) and two augmenters run on. The Samples it trained and
#     acknowledged after that checkpoint are sent again (the loader logs it),
#     and the run ends at step 40 with every epoch complete: 2048 distinct
#     samples each, counted in the final model only (the killed runs' steps
#     after their checkpoint do not count), one record per epoch, and as many
#     samples trained in all as the steps hold (none trained twice).
# At the end no process this test started is left.
set -u
. "$(dirname "$0")/lib.sh"

LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
NNTOOL="$BUILD/bin/nntool"
N=2048
BATCH=256
EPOCHS=5
STEPS=$((N * EPOCHS / BATCH))
MAX_PAUSE_S=15     # generous: the machine is shared; a lost worker's Samples go out again 2 s after it left
KILLS=${KILLS:-20}
CKPT_D=3           # d: checkpoint period, so that a kill loses the steps since the last one
MAX_PAUSE_D=60     # d: after a restart, what the dead trainer's queues held goes out again after
                   # 3 x the acknowledgement latency, which the outage itself lengthens
KILL_AT_D="10 17"  # d: kill the trainer once it has done this many steps (then resume): mid-epoch,
                   # the second one step after epoch 1 completed and 2 after a checkpoint

require_built "$LOADER" "$AUG" "$TRAINER" "$NNTOOL"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

# wait_steps RUN N SECONDS
wait_steps() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(steps_done "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# kill_tree PID: SIGKILL a process and its children (an augmenter and its workers)
kill_tree() {
    pkill -KILL -P "$1" 2>/dev/null
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

start_loader() {   # NAME
    "$LOADER" --data "$FMNIST" --limit "$N" --epochs "$EPOCHS" --exactly-once --seed 5 \
        --bind "tcp://127.0.0.1:$lp" --control "tcp://127.0.0.1:$cp" --quiet >"$tmp/$1.log" 2>&1 &
    loader_pid=$!
    pids+=("$loader_pid")
}

start_augmenter() {   # NAME
    "$AUG" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
        --workers 1 --batch 32 --size 28 --channels 1 --seed 5 >"$tmp/$1.log" 2>&1 &
    aug_pid=$!
    pids+=("$aug_pid")
}

start_trainer() {   # RUN [LOG [OPTION...]]: LOG names the output files (default RUN)
    local run=$1 log=${2:-$1}
    shift; [ $# -gt 0 ] && shift
    "$TRAINER" --method simclr --arch resnet-mini --width 8 --batch "$BATCH" --epochs "$EPOCHS" \
        --dataset-size "$N" --ckpt-every 1000 --seed 5 --bind "tcp://127.0.0.1:$tp" \
        --control "tcp://127.0.0.1:$cp" --evaluator none --out "$tmp/$run" --quiet "$@" \
        >"$tmp/$log.out" 2>"$tmp/$log.err" &
    trainer_pid=$!
    pids+=("$trainer_pid")
}

# check_epochs RUN [MAX_PAUSE]: every epoch complete with N distinct samples
# and one record, steps 1..STEPS, as many samples trained as the steps hold,
# no pause between two steps of MAX_PAUSE seconds (default MAX_PAUSE_S) or more
check_epochs() {
    "$PY" - "$tmp/$1/metrics.jsonl" "$N" "$EPOCHS" "$STEPS" "${2:-$MAX_PAUSE_S}" "$BATCH" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, epochs, steps, max_pause = (int(a) for a in sys.argv[2:6])
steprows = [r for r in rows if "loss" in r]
records = [r for r in rows if r.get("record") == "epoch"]
assert [r["step"] for r in steprows] == list(range(1, steps + 1)), [r["step"] for r in steprows]
by_epoch = {r["epoch"]: r for r in records}
assert sorted(by_epoch) == list(range(epochs)) and len(records) == epochs, records
for e, r in sorted(by_epoch.items()):
    assert r["complete"] and r["distinct"] == n and r["expected"] == n, r
# every step trains a full batch: the samples trained in all are the distinct ones
batch = int(sys.argv[6])
assert sum(r["distinct"] for r in records) == steps * batch, (sum(r["distinct"] for r in records), steps * batch)
pause = max(b["time"] - a["time"] for a, b in zip(steprows, steprows[1:]))
dups = sum(r["duplicates"] for r in records)
print(f"   epochs {sorted(by_epoch)}: {n} distinct samples each, {dups} duplicate(s) dropped; "
      f"longest pause between two steps {pause:.1f} s")
assert pause < max_pause, pause
EOF
}

# ---- a. an augmenter killed mid-epoch, another started ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
start_trainer a
# Augmenter 1 connects first and is then frozen: the loader keeps handing it
# Samples until its queue is full, so it surely holds some when it is killed;
# those are the ones the loader must send again.
start_augmenter a.aug1; aug1=$aug_pid
start_loader a.loader
for _ in $(seq 1 100); do
    grep -q "1 connected" "$tmp/a.loader.log" 2>/dev/null && break
    sleep 0.1
done
pkill -STOP -P "$aug1" 2>/dev/null; kill -STOP "$aug1" 2>/dev/null
start_augmenter a.aug2
if wait_steps "$tmp/a" 3 60; then
    kill_tree "$aug1"
    ok "a: augmenter 1 (frozen, its queue full) killed with SIGKILL at step $(steps_done "$tmp/a")"
else
    fail "a: no 3 steps within 60 s"; cat "$tmp/a.err"
fi
sleep 0.5
start_augmenter a.aug3
if gone "$trainer_pid" 300; then
    wait "$trainer_pid"; rc=$?
    [ "$rc" -eq 0 ] && ok "a: trainer exited 0" || { fail "a: trainer exit $rc"; tail -n 5 "$tmp/a.err"; }
else
    fail "a: trainer still running after 300 s"; tail -n 5 "$tmp/a.err" "$tmp/a.loader.log"
fi
resent=$(sed -n 's/.*re-sent \([0-9]*\) Sample.*/\1/p' "$tmp/a.loader.log" | tail -n 1)
grep -q "re-sending" "$tmp/a.loader.log" && [ "${resent:-0}" -gt 0 ] &&
    ok "a: the loader re-sent ${resent} Sample(s) the killed augmenter held" ||
    { fail "a: the loader logged no re-send"; tail -n 5 "$tmp/a.loader.log"; }
check_epochs a && ok "a: every epoch complete, $N distinct samples each, no long stall" ||
    { fail "a: epoch records"; grep '"record"' "$tmp/a/metrics.jsonl"; }
gone "$loader_pid" 10 && ok "a: the loader exited" || fail "a: loader still running"
gone "$aug_pid" 10
took=$(grep -oE '[0-9]+ samples' "$tmp/a.aug3.log" | tail -n 1 | cut -d' ' -f1)
[ "${took:-0}" -gt 0 ] && ok "a: the augmenter started after the kill took part (${took} samples)" ||
    { fail "a: the augmenter started after the kill"; tail -n 3 "$tmp/a.aug3.log"; }

# ---- b. the loader killed mid-run and started again ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
start_trainer b
start_loader b.loader1
start_augmenter b.aug1
start_augmenter b.aug2
if wait_steps "$tmp/b" 10 60; then
    kill -KILL "$loader_pid"; wait "$loader_pid" 2>/dev/null
    ok "b: loader killed with SIGKILL at step $(steps_done "$tmp/b")"
else
    fail "b: no 10 steps within 60 s"; cat "$tmp/b.err"
fi
sleep 1
start_loader b.loader2
if gone "$trainer_pid" 300; then
    wait "$trainer_pid"; rc=$?
    [ "$rc" -eq 0 ] && ok "b: trainer exited 0" || { fail "b: trainer exit $rc"; tail -n 5 "$tmp/b.err"; }
else
    fail "b: trainer still running after 300 s"; tail -n 5 "$tmp/b.err" "$tmp/b.loader2.log"
fi
grep -q "the trainer is in epoch" "$tmp/b.loader2.log" &&
    ok "b: the restarted loader $(grep -o 'starting at epoch [0-9]*' "$tmp/b.loader2.log")" ||
    { fail "b: the restarted loader did not hear the trainer"; cat "$tmp/b.loader2.log"; }
check_epochs b && ok "b: every epoch complete, $N distinct samples each" ||
    { fail "b: epoch records"; grep '"record"' "$tmp/b/metrics.jsonl"; }
gone "$loader_pid" 10 && ok "b: the restarted loader exited" || fail "b: loader still running"

# ---- c. the trainer killed again and again, also while writing checkpoints ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
run="$tmp/c"
"$LOADER" --data "$FMNIST" --limit "$N" --epochs 0 --bind "tcp://127.0.0.1:$lp" \
    --control "tcp://127.0.0.1:$cp" --quiet >"$tmp/c.loader.log" 2>&1 &
loader_pid=$!
pids+=("$loader_pid")
start_augmenter c.aug
ctargs=(--method simclr --arch resnet-mini --width 8 --batch 32 --steps 100000 --ckpt-every 1 --keep 3
        --seed 5 --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" --evaluator none --out "$run" --quiet)
bad=0 killed=0 resumed=0 orphans=0
RANDOM=7
for ((k = 1; k <= KILLS; k++)); do
    extra=(); [ -e "$run/latest" ] && { extra=(--resume latest); resumed=$((resumed + 1)); }
    "$TRAINER" "${ctargs[@]}" "${extra[@]}" >"$tmp/c.out" 2>>"$tmp/c.err" &
    tpid=$!
    pids+=("$tpid")
    # the first checkpoint of this run, then a random moment 0..1.5 s later
    before=$(readlink "$run/latest" 2>/dev/null)
    for ((i = 0; i < 300; i++)); do
        now=$(readlink "$run/latest" 2>/dev/null)
        [ -n "$now" ] && [ "$now" != "$before" ] && break
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.1
    done
    sleep "$((RANDOM % 1500 / 1000)).$(printf %03d $((RANDOM % 1000)))"
    kill -KILL "$tpid" 2>/dev/null && killed=$((killed + 1))
    wait "$tpid" 2>/dev/null
    # what a resume would take, and everything kept, must load
    target=$(readlink "$run/latest")
    case "$target" in ckpt-*.safetensors) ;; *) echo "   latest -> '$target'"; bad=$((bad + 1)) ;; esac
    "$PY" -c "import json,sys; json.load(open(sys.argv[1]))" "$run/${target%.safetensors}.json" 2>/dev/null ||
        { echo "   the state file of $target does not parse"; bad=$((bad + 1)); }
    for c in "$run"/ckpt-*.safetensors; do
        "$NNTOOL" info "$c" >/dev/null 2>"$tmp/c.info" || { echo "   $(basename "$c"): $(cat "$tmp/c.info")"; bad=$((bad + 1)); }
        # a kill between the two files leaves a checkpoint without state: never `latest`
        [ -e "${c%.safetensors}.json" ] || { orphans=$((orphans + 1)); continue; }
        "$PY" -c "import json,sys; json.load(open(sys.argv[1]))" "${c%.safetensors}.json" 2>/dev/null ||
            { echo "   $(basename "${c%.safetensors}.json") does not parse"; bad=$((bad + 1)); }
    done
done
steps_before=$("$NNTOOL" info "$run/latest" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["step"])')
[ "$bad" -eq 0 ] && ok "c: $killed SIGKILLs at random moments ($resumed resumes): latest and every kept checkpoint load, state files parse (at step $steps_before)" ||
    fail "c: $bad unreadable checkpoint(s) or state file(s) after the kills"
leftovers=$(cd "$run" && ls | grep -c '\.tmp\.' || true)
echo "   ($leftovers temporary file(s) of the last killed write in the run folder, never taken for a checkpoint;"
echo "    $orphans time(s) a checkpoint was seen without its state file, never taken either)"
[ "$leftovers" -le 3 ] && ok "c: a resumed trainer removes the temporary files killed writes left" ||
    fail "c: $leftovers temporary files pile up"
ls "$run" | grep -v '\.tmp\.' | grep -vE '^(ckpt-[0-9]{8}\.(safetensors|json)|latest|metrics\.jsonl)$' &&
    fail "c: unexpected files in the run folder" || ok "c: the run folder holds only checkpoints, their state, latest and metrics"
# a last resume, run to its end
timeout 60 "$TRAINER" "${ctargs[@]/100000/$((steps_before + 20))}" --resume latest >"$tmp/c.out" 2>"$tmp/c.last.err"
rc=$?
"$PY" - "$tmp/c.out" "$steps_before" <<'EOF' && ok "c: the last resume went from step $steps_before to the end (exit $rc)" || { fail "c: last resume (exit $rc)"; tail -n 5 "$tmp/c.last.err"; }
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert d["end"] == "done" and d["step"] == int(sys.argv[2]) + 20 and d["steps_this_run"] == 20, d
EOF
kill -TERM "$loader_pid" 2>/dev/null; gone "$loader_pid" 5
kill_tree "$aug_pid"

# ---- d. the trainer killed twice mid-epoch and resumed; the loader and augmenters run on ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
start_trainer d d.trainer1 --ckpt-every "$CKPT_D"
start_loader d.loader
start_augmenter d.aug1
start_augmenter d.aug2
k=1
for at in $KILL_AT_D; do
    if wait_steps "$tmp/d" "$at" 90; then
        kill -KILL "$trainer_pid"; wait "$trainer_pid" 2>/dev/null
        done_steps=$(steps_done "$tmp/d")
        ckpt=$(readlink "$tmp/d/latest"); ckpt=${ckpt#ckpt-}; ckpt=$((10#${ckpt%.safetensors}))
        ok "d: trainer killed with SIGKILL at step $done_steps, $((done_steps - ckpt)) step(s) after its last checkpoint"
    else
        fail "d: no $at steps within 90 s"; tail -n 5 "$tmp/d.trainer$k.err"
    fi
    k=$((k + 1))
    start_trainer d "d.trainer$k" --ckpt-every "$CKPT_D" --resume latest
done
if gone "$trainer_pid" 300; then
    wait "$trainer_pid"; rc=$?
    [ "$rc" -eq 0 ] && ok "d: the last resumed trainer exited 0" || { fail "d: trainer exit $rc"; tail -n 5 "$tmp/d.trainer$k.err"; }
else
    fail "d: trainer still running after 300 s"; tail -n 5 "$tmp/d.trainer$k.err" "$tmp/d.loader.log"
fi
grep -q "resumed .* in epoch" "$tmp/d.trainer2.err" && grep -q "resumed .* in epoch" "$tmp/d.trainer3.err" &&
    ok "d: both resumed trainers restored their epochs ($(grep -ho 'in epoch [0-9]*' "$tmp/d.trainer2.err" "$tmp/d.trainer3.err" | tr '\n' ' '))" ||
    { fail "d: a resumed trainer did not restore its epochs"; grep -h resumed "$tmp"/d.trainer*.err; }
lost=$(grep -cE "does not hold [0-9]+ acknowledged|lacks Samples of epoch" "$tmp/d.loader.log")
[ "${lost:-0}" -gt 0 ] &&
    ok "d: the loader sent again what the killed trainers had acknowledged after their checkpoint:" &&
    grep -E "does not hold|lacks Samples" "$tmp/d.loader.log" | sed 's/^/     /' ||
    { fail "d: the loader did not send anything again for a resumed trainer"; tail -n 5 "$tmp/d.loader.log"; }
check_epochs d "$MAX_PAUSE_D" && ok "d: every epoch complete, $N distinct samples each in the final model, none trained twice" ||
    { fail "d: epoch records"; grep '"record"' "$tmp/d/metrics.jsonl"; }
gone "$loader_pid" 10 && ok "d: the loader exited" || { fail "d: loader still running"; tail -n 3 "$tmp/d.loader.log"; }

# ---- no process left ----
sleep 0.5
left=0
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { left=$((left + 1)); kill -KILL "$p" 2>/dev/null; }; done
[ "$left" -eq 0 ] && ok "no process left" || fail "$left process(es) still running"

echo "it_faults: $failures failure(s)"
[ "$failures" -eq 0 ]
