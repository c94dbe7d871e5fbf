#!/usr/bin/env bash
# The trainer on two MPI ranks, end to end, on loopback with free ports:
# Fashion-MNIST limited to N images, the loader with --exactly-once, two
# augmenters each pushing to both ranks (--push a comma list), `mpirun -np 2`
# trainer (SimCLR, width 4, global batch 64, --sync-bn) and the evaluator.
#  a. The loader streams without end, the trainer stops at step EPOCHS * N /
#     64 with exit 0; metrics.jsonl (rank 0 alone writes it) has steps 1..S
#     once each, epoch 0 complete with N distinct samples, and as many
#     distinct samples in all as the steps hold (none trained twice, though
#     each rank trained only its half); the summary
#     says 2 ranks and the time in collectives; both ranks trained; STOP ends
#     the loader, the augmenters and the evaluator, which evaluated the last
#     checkpoint.
#  e. Each augmenter feeds one rank; rank 1 stopped (SIGSTOP) with Samples
#     queued and its augmenter killed: the loader re-sends them through the
#     other augmenter, and the copies reach rank 0 while their originals wait
#     on rank 1; the ranks take them out of their batches before the step
#     (the log counts them) and part a's checks hold: none trained twice.
#  b. A rank killed with SIGKILL mid-run ends the whole trainer (mpirun and
#     the other rank exit, bounded by a timeout: nobody waits in a collective
#     forever); `--resume latest` on ONE process, bound on rank 0's endpoint,
#     continues the run while loader and augmenters keep running, and the run
#     ends with every epoch complete, N distinct samples each, counted in the
#     final model only.
#  f. The same checkpoint resumed on two ranks, rank 1 given an --out that
#     does not exist (as on a machine without the run folder): rank 0 reads
#     the checkpoint and its state and hands them over; the run ends as in b.
#  d. SIGTERM to run.sh --trainers 2 (as Ctrl-C): run.sh asks mpirun's ranks to
#     stop (SIGUSR1): they stop at the same step, rank 0 writes a checkpoint,
#     run.sh exits 130 and leaves nothing running.
#  A global batch that the ranks cannot split is a usage error (exit 2).
#  c. run.sh --trainers 2 --sync-bn: the same pipeline as a user starts it
#     (mpirun underneath, each augmenter pushing to both ranks), one epoch
#     trained exactly once, the evaluator's report written, nothing left.
# At the end no process this test started is left.
set -u
. "$(dirname "$0")/lib.sh"

LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
EVAL="$BUILD/bin/evaluator"
N=1024
BATCH=64
EPOCHS=2
STEPS=$((N * EPOCHS / BATCH))
KILL_AT=9          # b: SIGKILL rank 1 once this many steps are done (after the step-8 checkpoint)

require_built "$LOADER" "$AUG" "$TRAINER" "$EVAL"
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found: make deps installs openmpi-bin"; exit 1; }
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }
mpi_args=(-np 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_args+=(--allow-run-as-root)
export OMPI_MCA_mpi_yield_when_idle=1

# Short queues: a Sample waits little between the loader and a rank, so a slow
# machine (or a sanitizer build) rarely makes the loader think one lost and
# send it again (part e makes it do so on purpose). At the end of the data the
# last Samples may all wait on one rank while the other starves (the global
# batch cannot be split), so parts a and e stream without end and stop the
# trainer by its step count (as it_mpi_netns does): epoch 0 complete, and as
# many distinct Samples as the steps hold. Part b counts every epoch to its
# end, on one process after the resume.
LOADER_HWM=32      # Samples per augmenter connection
TRAINER_HWM=4      # ViewBatches per rank

# two consecutive free ports for the ranks' ViewBatch endpoints
two_ports() {
    local base
    for _ in $(seq 1 50); do
        base=$((20000 + RANDOM % 40000))
        "$PY" -c "import socket; a=socket.socket(); a.bind(('127.0.0.1', $base)); b=socket.socket(); b.bind(('127.0.0.1', $base + 1))" \
            2>/dev/null && { echo "$base"; return 0; }
    done
    return 1
}

wait_steps() {   # RUN N SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(steps_done "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

start_pipeline() {   # NAME [LOADER_EPOCHS]: loader and two augmenters pushing to both ranks
    # shellcheck disable=SC2086
    "$LOADER" --data "$FMNIST" --limit "$N" --epochs "${2:-$EPOCHS}" --exactly-once --seed 5 --hwm "$LOADER_HWM" ${LOADER_EXTRA:-} \
        --bind "tcp://127.0.0.1:$lp" --control "tcp://127.0.0.1:$cp" --quiet >"$tmp/$1.loader.log" 2>&1 &
    loader_pid=$!
    aug_pids=()
    local push
    for a in 1 2; do
        push="tcp://127.0.0.1:$tp,tcp://127.0.0.1:$((tp + 1))"
        # AUG_SPLIT: augmenter 1 feeds rank 1 alone and augmenter 2 rank 0
        [ -n "${AUG_SPLIT:-}" ] && push="tcp://127.0.0.1:$((tp + 2 - a))"
        start_aug "$1" "$a" "$push"
    done
    pids+=("$loader_pid" "${aug_pids[@]}")
}

start_aug() {   # NAME SEED PUSH: one more augmenter, its pid in aug_pids
    "$AUG" --connect "tcp://127.0.0.1:$lp" --push "$3" \
        --control "tcp://127.0.0.1:$cp" --workers 1 --batch 16 --size 28 --channels 1 --seed "$2" \
        --quiet >"$tmp/$1.aug$2.log" 2>&1 &
    aug_pids+=($!)
}

rank1_of() {   # RUN: the pid of rank 1 of the trainer writing to $tmp/RUN (empty when none)
    local p
    for p in $(pgrep -x trainer); do
        tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qx "$tmp/$1" &&
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && echo "$p"
    done
}

targs() {   # RUN [LENGTH OPTION...]: the trainer's options
    local run=$1; shift
    local length=(--epochs "$EPOCHS")
    [ $# -gt 0 ] && length=("$@")
    echo --method simclr --arch resnet-mini --width 4 --batch "$BATCH" "${length[@]}" --dataset-size "$N" \
        --seed 5 --sync-bn --hwm "$TRAINER_HWM" --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" --out "$tmp/$run" --quiet
}

# check_stream RUN: steps 1..STEPS once each, epoch 0 complete with N distinct
# samples, and as many distinct samples over all epochs as the steps hold
# (none trained twice)
check_stream() {
    "$PY" - "$tmp/$1/metrics.jsonl" "$N" "$STEPS" "$BATCH" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, steps, batch = (int(a) for a in sys.argv[2:5])
steprows = [r for r in rows if "loss" in r]
records = [r for r in rows if r.get("record") == "epoch"]
assert [r["step"] for r in steprows] == list(range(1, steps + 1)), [r["step"] for r in steprows]
by_epoch = {}
for r in records:
    by_epoch[r["epoch"]] = r          # the last record of each epoch
assert by_epoch[0]["complete"] and by_epoch[0]["distinct"] == n, by_epoch[0]
total = sum(r["distinct"] for r in by_epoch.values())
assert total == steps * batch, (total, steps * batch, by_epoch)
print(f"   epoch 0: {n} distinct samples; {total} distinct over epochs {sorted(by_epoch)} in {steps} steps of {batch}")
PYEOF
}

# check_epochs RUN: steps 1..STEPS once each, every epoch complete with N
# distinct samples and one record, as many samples as the steps hold
check_epochs() {
    "$PY" - "$tmp/$1/metrics.jsonl" "$N" "$EPOCHS" "$STEPS" "$BATCH" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, epochs, steps, batch = (int(a) for a in sys.argv[2:6])
steprows = [r for r in rows if "loss" in r]
records = [r for r in rows if r.get("record") == "epoch"]
assert [r["step"] for r in steprows] == list(range(1, steps + 1)), [r["step"] for r in steprows]
by_epoch = {r["epoch"]: r for r in records}
assert sorted(by_epoch) == list(range(epochs)) and len(records) == epochs, records
for e, r in sorted(by_epoch.items()):
    assert r["complete"] and r["distinct"] == n and r["expected"] == n, r
assert sum(r["distinct"] for r in records) == steps * batch, (sum(r["distinct"] for r in records), steps * batch)
dups = sum(r["duplicates"] for r in records)
print(f"   epochs {sorted(by_epoch)}: {n} distinct samples each, {dups} duplicate(s) dropped, "
      f"{steps} steps of {batch}")
EOF
}

# ---- a. two ranks end to end ----
lp=$(free_port); cp=$(free_port); ep=$(free_port); tp=$(two_ports) || { echo "FAIL: no two free ports"; exit 1; }
"$EVAL" --bind "tcp://127.0.0.1:$ep" --control "tcp://127.0.0.1:$cp" --out "$tmp/a.eval" \
    --max-train 500 --max-test 200 --label-fraction 1 --no-baselines --attention 0 --classmap 0 \
    --align-items 100 >"$tmp/a.eval.log" 2>&1 &
eval_pid=$!
pids+=("$eval_pid")
# shellcheck disable=SC2046
timeout 90 mpirun "${mpi_args[@]}" "$TRAINER" $(targs a --steps "$STEPS") --evaluator "tcp://127.0.0.1:$ep" \
    >"$tmp/a.out" 2>"$tmp/a.err" &
mpi_pid=$!
pids+=("$mpi_pid")
start_pipeline a 0
wait "$mpi_pid"; rc=$?
[ "$rc" -eq 0 ] && ok "a: mpirun -np 2 trainer exited 0" || { fail "a: mpirun exit $rc"; tail -n 20 "$tmp/a.err"; }
check_stream a && ok "a: epoch 0 complete, none trained twice, trained by two ranks" ||
    { fail "a: epoch records"; grep '"record"' "$tmp/a/metrics.jsonl"; }
"$PY" - "$tmp/a.out" <<'EOF' && ok "a: the summary (rank 0 alone) names 2 ranks and the time in collectives" ||
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
assert len(lines) == 1, lines            # one summary: rank 0's
s = json.loads(lines[0])
assert s["end"] == "done" and s["ranks"] == 2 and s["comm_s_per_step"] > 0 and s["comm_bytes_per_step"] > 0, s
print(f"   {s['comm_s_per_step'] * 1e3:.1f} ms and {s['comm_bytes_per_step'] / 1e6:.2f} MB per step in collectives")
EOF
    { fail "a: summary"; cat "$tmp/a.out"; }
grep -q "trainer.1: rank 1: $STEPS steps" "$tmp/a.err" && ok "a: rank 1 trained all $STEPS steps" ||
    { fail "a: rank 1's line"; grep "trainer.1" "$tmp/a.err" | tail -n 5; }
stopped=1
for p in "$loader_pid" "${aug_pids[@]}" "$eval_pid"; do gone "$p" 30 || stopped=0; done
[ "$stopped" -eq 1 ] && ok "a: STOP ended the loader, both augmenters and the evaluator" ||
    { fail "a: a stage still runs after STOP"; tail -n 3 "$tmp/a.loader.log" "$tmp"/a.aug*.log "$tmp/a.eval.log"; }
grep -q "\"step\": *$STEPS\|\"step\":$STEPS" "$tmp/a.eval/eval.jsonl" 2>/dev/null &&
    ok "a: the evaluator evaluated the step-$STEPS checkpoint" ||
    { fail "a: no evaluation of step $STEPS"; tail -n 5 "$tmp/a.eval.log"; }

# ---- e. copies on both ranks: each augmenter feeds one rank. Rank 1 is
# stopped (SIGSTOP) after the first step with Samples in its queue, and the
# augmenter feeding it is killed: the loader re-sends what waits
# unacknowledged through the other augmenter alone, so the copies reach rank
# 0 while their originals wait on rank 1. A new augmenter feeding both ranks
# joins, and rank 1 continues. Before each step the ranks compare their
# batches and take out what a lower rank holds or another rank trained, so
# none is trained twice.
lp=$(free_port); cp=$(free_port); tp=$(two_ports) || { echo "FAIL: no two free ports"; exit 1; }
# shellcheck disable=SC2046
timeout 120 mpirun "${mpi_args[@]}" "$TRAINER" $(targs e --steps "$STEPS") --evaluator none --queue 64 \
    >"$tmp/e.out" 2>"$tmp/e.err" &
mpi_pid=$!
pids+=("$mpi_pid")
LOADER_EXTRA="--resend-after 0.5" AUG_SPLIT=1 start_pipeline e 0
rank1=""
wait_steps "$tmp/e" 1 60 && rank1=$(rank1_of e)
if [ -n "$rank1" ]; then
    kill -STOP "$rank1"
    stopped_at=$(steps_done "$tmp/e")
    resent=$(grep -c "re-sending" "$tmp/e.loader.log")
    kill -KILL "${aug_pids[0]}"; wait "${aug_pids[0]}" 2>/dev/null
    # until the loader has re-sent (it takes the lost augmenter's Samples as
    # due at once), then 1 s more for the copies to travel
    held=0
    while [ "$held" -lt 300 ] && [ "$(grep -c "re-sending" "$tmp/e.loader.log")" -le "$resent" ]; do
        sleep 0.1; held=$((held + 1))
    done
    sleep 1
    start_aug e 3 "tcp://127.0.0.1:$tp,tcp://127.0.0.1:$((tp + 1))"
    pids+=("${aug_pids[-1]}")
    kill -CONT "$rank1"
    ok "e: rank 1 stopped for $(((held + 10) / 10)) s at step $stopped_at, its augmenter killed"
else
    fail "e: rank 1 not found after the first step"; tail -n 5 "$tmp/e.err"
fi
wait "$mpi_pid"; rc=$?
[ "$rc" -eq 0 ] && ok "e: mpirun -np 2 trainer exited 0" ||
    { fail "e: mpirun exit $rc"; tail -n 20 "$tmp/e.err"; }
copies=$(sed -n 's/.*rank [01]: \([0-9]*\) image(s) taken out of batches.*/\1/p' "$tmp/e.err" | awk '{ s += $1 } END { print s + 0 }')
[ "${copies:-0}" -gt 0 ] && ok "e: the ranks took $copies copies out of their batches before the step" ||
    echo "skip: e: no copy reached both ranks this time, so the take-out was not exercised; the checks below still hold"
check_stream e && ok "e: epoch 0 complete, none trained twice across the ranks" ||
    { fail "e: epoch records"; grep '"record"' "$tmp/e/metrics.jsonl"; }
for p in "$loader_pid" "${aug_pids[@]:1}"; do gone "$p" 30 || kill -KILL "$p" 2>/dev/null; done

# ---- b. a rank killed; resumed on one process ----
lp=$(free_port); cp=$(free_port); tp=$(two_ports) || { echo "FAIL: no two free ports"; exit 1; }
# shellcheck disable=SC2046
timeout 90 mpirun "${mpi_args[@]}" "$TRAINER" $(targs b) --evaluator none --ckpt-every 4 \
    >"$tmp/b1.out" 2>"$tmp/b1.err" &
mpi_pid=$!
pids+=("$mpi_pid")
start_pipeline b
if wait_steps "$tmp/b" "$KILL_AT" 60; then
    rank1=$(rank1_of b)
    if [ -n "$rank1" ]; then
        kill -KILL "$rank1"
        ok "b: rank 1 (pid $rank1) killed with SIGKILL at step $(steps_done "$tmp/b")"
    else
        fail "b: rank 1's process not found"
    fi
else
    fail "b: no $KILL_AT steps within 60 s"; tail -n 5 "$tmp/b1.err"
fi
if gone "$mpi_pid" 30; then
    wait "$mpi_pid"; rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok "b: mpirun and rank 0 ended (exit $rc) without waiting for the lost rank" ||
        { fail "b: mpirun exit $rc"; tail -n 5 "$tmp/b1.err"; }
else
    fail "b: the trainer still runs 30 s after a rank died"; tail -n 5 "$tmp/b1.err"
fi
for p in $(pgrep -x trainer); do
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qx "$tmp/b" && fail "b: trainer $p is left"
done
at=$(readlink "$tmp/b/latest")
cp -a "$tmp/b" "$tmp/f"   # part f resumes the same checkpoint on two ranks
# shellcheck disable=SC2046
timeout 90 "$TRAINER" $(targs b) --evaluator none --ckpt-every 4 --resume latest >"$tmp/b2.out" 2>"$tmp/b2.err" &
t2=$!
pids+=("$t2")
wait "$t2"; rc=$?
[ "$rc" -eq 0 ] && ok "b: resumed from $at on one process, exit 0" || { fail "b: resumed trainer exit $rc"; tail -n 10 "$tmp/b2.err"; }
check_epochs b && ok "b: every epoch complete, $N distinct samples each, across 2 ranks then 1" ||
    { fail "b: epoch records"; grep '"record"' "$tmp/b/metrics.jsonl"; tail -n 5 "$tmp/b2.err"; }
stopped=1
for p in "$loader_pid" "${aug_pids[@]}"; do gone "$p" 30 || stopped=0; done
[ "$stopped" -eq 1 ] && ok "b: STOP ended the loader and both augmenters" ||
    { fail "b: a stage still runs"; tail -n 3 "$tmp/b.loader.log" "$tmp"/b.aug*.log; }

# ---- f. resumed on two ranks, rank 1 where the run folder is not ----
lp=$(free_port); cp=$(free_port); tp=$(two_ports) || { echo "FAIL: no two free ports"; exit 1; }
mpi_one=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_one+=(--allow-run-as-root)
# shellcheck disable=SC2046
timeout 90 mpirun "${mpi_one[@]}" -np 1 "$TRAINER" $(targs f) --evaluator none --ckpt-every 4 --resume latest \
    : -np 1 "$TRAINER" $(targs f.elsewhere) --evaluator none --ckpt-every 4 --resume latest \
    >"$tmp/f.out" 2>"$tmp/f.err" &
mpi_pid=$!
pids+=("$mpi_pid")
start_pipeline f
wait "$mpi_pid"; rc=$?
[ "$rc" -eq 0 ] && ok "f: resumed from $at on 2 ranks, rank 1 without the run folder, exit 0" ||
    { fail "f: mpirun exit $rc"; tail -n 10 "$tmp/f.err"; }
[ ! -e "$tmp/f.elsewhere" ] && ok "f: rank 1 read and wrote nothing of its own --out" ||
    fail "f: rank 1 made $tmp/f.elsewhere"
check_epochs f && ok "f: every epoch complete, $N distinct samples each, across 2 ranks, then 2 again" ||
    { fail "f: epoch records"; grep '"record"' "$tmp/f/metrics.jsonl"; tail -n 5 "$tmp/f.err"; }
for p in "$loader_pid" "${aug_pids[@]}"; do gone "$p" 30 || kill -KILL "$p" 2>/dev/null; done

# ---- usage: a global batch that does not split over the ranks ----
lp=$(free_port); cp=$(free_port); tp=$(two_ports) || { echo "FAIL: no two free ports"; exit 1; }
# shellcheck disable=SC2046
timeout 60 mpirun "${mpi_args[@]}" "$TRAINER" $(targs u) --batch 63 --evaluator none >"$tmp/u.out" 2>"$tmp/u.err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "not a multiple of the 2 ranks" "$tmp/u.err" &&
    ok "--batch 63 on 2 ranks: usage error (exit 2) naming the fix" ||
    { fail "--batch 63 on 2 ranks: exit $rc"; tail -n 5 "$tmp/u.err"; }

# ---- c. run.sh --trainers 2 ----
base=""
for _ in $(seq 1 50); do   # loader, trainer, evaluator, control, rank 1: five consecutive free ports
    b=$((20000 + RANDOM % 40000))
    "$PY" -c "import socket
for p in range($b, $b + 5): socket.socket().bind(('127.0.0.1', p))" 2>/dev/null && { base=$b; break; }
done
if [ -z "$base" ]; then
    fail "c: no five free ports"
else
    BUILD="$BUILD" timeout 120 "$root/run.sh" --no-build --trainers 2 --sync-bn --width 4 --batch 64 --epochs 1 \
        --out "$tmp/c" --port-base "$base" --loader-opts "--limit $N" \
        --evaluator-opts "--max-train 500 --max-test 200 --label-fraction 1 --no-baselines --attention 0 --classmap 0 --align-items 100 --finetune-per-class none" \
        >"$tmp/c.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] && ok "c: run.sh --trainers 2 exited 0" || { fail "c: run.sh exit $rc"; tail -n 20 "$tmp/c.log"; }
    grep -q "starting trainer: setsid mpirun -np 2" "$tmp/c.log" && grep -q '"ranks":2' "$tmp/c.log" &&
        ok "c: the trainer ran under mpirun on 2 ranks" || { fail "c: not 2 ranks"; grep trainer "$tmp/c.log" | head; }
    "$PY" - "$tmp/c/metrics.jsonl" "$N" <<'EOF' && ok "c: epoch 0 complete, $N distinct samples" ||
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"record"' in l]
assert len(recs) == 1 and recs[0]["complete"] and recs[0]["distinct"] == int(sys.argv[2]), recs
EOF
        { fail "c: epoch record"; grep record "$tmp/c/metrics.jsonl"; }
    [ -s "$tmp/c/report/summary.txt" ] && ok "c: the evaluator wrote its report" || fail "c: no report/summary.txt"
fi

# ---- d. run.sh --trainers 2 interrupted: every rank stops after a checkpoint ----
if [ -n "$base" ]; then
    BUILD="$BUILD" "$root/run.sh" --no-build --trainers 2 --width 4 --batch 64 --epochs 50 --out "$tmp/d" \
        --port-base "$base" --loader-opts "--limit $N" --evaluator-opts "--max-train 500 --max-test 200 \
        --label-fraction 1 --no-baselines --attention 0 --classmap 0 --align-items 100" >"$tmp/d.log" 2>&1 &
    run_pid=$!
    pids+=("$run_pid")
    if wait_steps "$tmp/d" 5 60; then
        kill -TERM "$run_pid"   # as Ctrl-C (a script's background job ignores SIGINT)
        if gone "$run_pid" 60; then
            wait "$run_pid"; rc=$?
            [ "$rc" -eq 130 ] && grep -q '"end":"signal"' "$tmp/d.log" && [ -e "$tmp/d/latest" ] &&
                ok "d: SIGTERM to run.sh: both ranks stopped together after a checkpoint ($(readlink "$tmp/d/latest"))" ||
                { fail "d: run.sh exit $rc after SIGTERM"; tail -n 8 "$tmp/d.log"; }
        else
            fail "d: run.sh still runs 60 s after SIGTERM"; tail -n 5 "$tmp/d.log"
        fi
    else
        fail "d: no 5 steps within 60 s"; tail -n 5 "$tmp/d.log"
    fi
fi

left=0
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
pgrep -x trainer -a 2>/dev/null | grep -q "$tmp" && left=1
[ "$left" -eq 0 ] && ok "no process left" || fail "processes left running"
[ "$failures" -eq 0 ] && echo "it_mpi: all passed" && exit 0
echo "it_mpi: $failures failure(s)"
exit 1
