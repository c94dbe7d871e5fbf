#!/usr/bin/env bash
# Integration test of the peer watch (transport/watch.c) and of the beats on
# the Control socket (transport/control.c, liveness.c): loader + one
# augmenter + trainer on Fashion-MNIST, on loopback with free ports.
#  0. SIGSTOP the augmenter (its main process and its worker): the trainer
#     says the worker is silent within 5 s; SIGCONT: it says it is back.
#  1. SIGSTOP the trainer for 4 s, then SIGCONT: every stage keeps running
#     and the trainer trains on; the loader and the augmenter say the
#     trainer's heartbeats went silent, and came back.
#  2. SIGKILL the trainer: the augmenter (both sockets) and the loader say they lost it; a
#     new trainer (fresh run folder) on the same endpoints: the augmenter says
#     it is connected again, the new trainer sees its augmenter connect,
#     receives data and trains to its last step, and its STOP ends the loader
#     and the augmenter (exit 0).
#  3. The log stays short: no line per reconnection attempt.
# The times printed (seconds until each line appears) are for information;
# the waits are generous bounds, not measurements.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
STEPS2=20          # steps of the second trainer
WAIT_LOST_S=10     # bound on the wait for a "lost" / "connected again" line

require_built "$LOADER" "$AUG" "$TRAINER"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps installs dataset-fashion-mnist)"; exit 1; }

lp=$(free_port); tp=$(free_port); cp=$(free_port)
to_trainer="tcp://127.0.0.1:$tp"
to_control="tcp://127.0.0.1:$cp"

# count PATTERN FILE: lines of FILE matching PATTERN (fixed string)
count() { grep -cF -- "$1" "$2" 2>/dev/null || true; }

# wait_count PATTERN FILE N SECONDS: until FILE has N lines matching PATTERN;
# sets waited (seconds, one decimal). 0 when reached.
wait_count() {
    local i start
    start=$(date +%s%N)
    for ((i = 0; i < $4 * 10; i++)); do
        if [ "$(count "$1" "$2")" -ge "$3" ]; then
            waited=$(( ($(date +%s%N) - start) / 100000000 ))
            waited="$((waited / 10)).$((waited % 10))"
            return 0
        fi
        sleep 0.1
    done
    waited=timeout
    return 1
}

# metrics_lines RUN: steps written by the trainer of RUN so far
metrics_lines() { if [ -e "$1/metrics.jsonl" ]; then wc -l <"$1/metrics.jsonl"; else echo 0; fi; }

timeout 120 "$LOADER" --data "$FMNIST" --limit 20000 --epochs 0 --bind "tcp://127.0.0.1:$lp" \
    --control "$to_control" --quiet >"$tmp/loader.out" 2>"$tmp/loader.err" &
loader_pid=$!
timeout 120 "$AUG" --connect "tcp://127.0.0.1:$lp" --push "$to_trainer" --control "$to_control" \
    --workers 1 --batch 32 --size 28 --channels 1 --quiet >"$tmp/aug.out" 2>"$tmp/aug.err" &
aug_pid=$!
pids+=("$loader_pid" "$aug_pid")

targs=(--method simclr --width 8 --batch 32 --bind "$to_trainer" --control "$to_control" --evaluator none --quiet)
"$TRAINER" "${targs[@]}" --steps 100000 --out "$tmp/run1" >"$tmp/t1.out" 2>"$tmp/t1.err" &
t1=$!
pids+=("$t1")
for _ in $(seq 300); do [ "$(metrics_lines "$tmp/run1")" -ge 5 ] && break; sleep 0.1; done
if [ "$(metrics_lines "$tmp/run1")" -ge 5 ]; then
    ok "the first trainer trains"
else
    fail "the first trainer wrote no metrics in 30 s"
    tail -n 5 "$tmp/t1.err" "$tmp/aug.err" "$tmp/loader.err"
    exit 1
fi

# ---- 0. a stopped augmenter is reported by the trainer ----
# $aug_pid is the `timeout` wrapper: stop the augmenter and its worker(s).
aug_main=$(pgrep -P "$aug_pid" -x augmenter)
aug_procs=("$aug_main" $(pgrep -P "$aug_main"))
kill -STOP "${aug_procs[@]}"
if wait_count "(stopped or hung?)" "$tmp/t1.err" 1 5; then
    ok "SIGSTOP augmenter: the trainer says it is silent (after ${waited} s): $(grep -F "(stopped or hung?)" "$tmp/t1.err" | head -1)"
else
    fail "SIGSTOP augmenter: no '(stopped or hung?)' line from the trainer within 5 s"
    tail -n 5 "$tmp/t1.err"
fi
grep -F "(stopped or hung?)" "$tmp/t1.err" | grep -qF "augmenter-0@" ||
    fail "the silent peer is not named as augmenter worker 0"
sleep 2
kill -CONT "${aug_procs[@]}"
if wait_count " back after " "$tmp/t1.err" 1 5 && grep -F " back after " "$tmp/t1.err" | grep -qF "augmenter-0@"; then
    ok "SIGCONT augmenter: the trainer says it is back (after ${waited} s): $(grep -F " back after " "$tmp/t1.err" | head -1)"
else
    fail "SIGCONT augmenter: no 'back after' line from the trainer within 5 s"
    tail -n 5 "$tmp/t1.err"
fi

# ---- 1. SIGSTOP / SIGCONT ----
lost_push="lost the connection to $to_trainer (trainer)"
lost_ctl="lost the connection to $to_control (trainer control)"
back_push="connected again to $to_trainer (trainer)"
back_ctl="connected again to $to_control (trainer control)"
# The peer watch does not see a stopped trainer (its kernel still answers;
# the sockets carry no ZMTP heartbeat, whose libzmq 4.3.4 aborts readers at
# their high-water mark): the trainer's own heartbeats on Control do.
kill -STOP "$t1"
sleep 4
before=$(metrics_lines "$tmp/run1")
kill -CONT "$t1"
for who in loader aug; do
    wait_count "(stopped or hung?)" "$tmp/$who.err" 1 3 && grep -F "(stopped or hung?)" "$tmp/$who.err" | grep -qF "trainer@" &&
        ok "SIGSTOP trainer: the $who says its heartbeats are silent" ||
        { fail "SIGSTOP trainer: no '(stopped or hung?)' line from the $who"; tail -n 5 "$tmp/$who.err"; }
    wait_count " back after " "$tmp/$who.err" 1 5 && grep -F " back after " "$tmp/$who.err" | grep -qF "trainer@" &&
        ok "SIGCONT trainer: the $who says its heartbeats are back" ||
        { fail "SIGCONT trainer: no 'back after' line from the $who"; tail -n 5 "$tmp/$who.err"; }
done
for _ in $(seq 200); do [ "$(metrics_lines "$tmp/run1")" -ge $((before + 5)) ] && break; sleep 0.1; done
[ "$(metrics_lines "$tmp/run1")" -ge $((before + 5)) ] &&
    ok "SIGSTOP for 4 s, SIGCONT: the trainer trains on ($before -> $(metrics_lines "$tmp/run1") steps)" ||
    fail "SIGCONT: the trainer did not train on ($before -> $(metrics_lines "$tmp/run1") steps)"
kill -0 "$aug_pid" 2>/dev/null && kill -0 "$loader_pid" 2>/dev/null &&
    ok "SIGSTOP: the loader and the augmenter kept running" || fail "SIGSTOP: a stage died"

# ---- 2. SIGKILL, a new trainer ----
kill -KILL "$t1"
wait "$t1" 2>/dev/null
if wait_count "$lost_push" "$tmp/aug.err" 1 "$WAIT_LOST_S"; then
    ok "SIGKILL: the augmenter says it lost the trainer (after ${waited} s)"
else
    fail "SIGKILL: no '$lost_push' within $WAIT_LOST_S s"
    cat "$tmp/aug.err"
fi
wait_count "$lost_ctl" "$tmp/aug.err" 1 "$WAIT_LOST_S" &&
    ok "SIGKILL: and its control socket (after ${waited} s)" || { fail "SIGKILL: no '$lost_ctl'"; cat "$tmp/aug.err"; }
wait_count "$lost_ctl" "$tmp/loader.err" 1 "$WAIT_LOST_S" &&
    ok "SIGKILL: the loader says it lost the trainer's control socket (after ${waited} s)" ||
    { fail "SIGKILL: the loader did not say '$lost_ctl'"; cat "$tmp/loader.err"; }
sleep 1   # a few reconnection attempts while the trainer is away

timeout 60 "$TRAINER" "${targs[@]}" --steps "$STEPS2" --out "$tmp/run2" >"$tmp/t2.out" 2>"$tmp/t2.err" &
t2=$!
pids+=("$t2")
if wait_count "$back_push" "$tmp/aug.err" 1 "$WAIT_LOST_S"; then
    ok "new trainer: the augmenter says it is connected again (after ${waited} s)"
else
    fail "new trainer: no '$back_push' within $WAIT_LOST_S s"
    cat "$tmp/aug.err"
fi
wait "$t2"
rc=$?
if [ "$rc" -eq 0 ] && "$PY" -c "
import json, sys
d = json.loads(open('$tmp/t2.out').read().strip().splitlines()[-1])
sys.exit(0 if d['end'] == 'done' and d['step'] == $STEPS2 else 1)" 2>/dev/null; then
    ok "new trainer: received data and trained its $STEPS2 steps"
else
    fail "new trainer: exit $rc, $(tail -c 300 "$tmp/t2.out")"
    tail -n 5 "$tmp/t2.err"
fi
grep -qF "augmenters on $to_trainer: 1 connected" "$tmp/t2.err" &&
    ok "new trainer: it logged its augmenter connecting" ||
    { fail "new trainer: no 'augmenters on $to_trainer: 1 connected'"; cat "$tmp/t2.err"; }

stopped=1
for p in "$loader_pid" "$aug_pid"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && stopped=0
done
if [ "$stopped" -eq 1 ]; then
    wait "$loader_pid"; rl=$?
    wait "$aug_pid"; ra=$?
    [ "$rl" -eq 0 ] && [ "$ra" -eq 0 ] && ok "the new trainer's STOP ended the loader and the augmenter (exit 0)" ||
        fail "loader exit $rl, augmenter exit $ra"
else
    fail "the loader or the augmenter is still running after the new trainer's STOP"
fi

# ---- 3. bounded chatter ----
n_lost=$(( $(count "$lost_push" "$tmp/aug.err") + $(count "$lost_ctl" "$tmp/aug.err") ))
n_back=$(( $(count "$back_push" "$tmp/aug.err") + $(count "$back_ctl" "$tmp/aug.err") ))
n_watch=$(grep -cE "lost the connection|connected again|no connection to|connected to tcp" "$tmp/aug.err")
if [ "$n_lost" -eq 2 ] && [ "$n_back" -eq 2 ] && [ "$n_watch" -le 12 ]; then
    ok "one line per outage and socket ($n_watch peer-watch lines from the augmenter in all)"
else
    fail "augmenter log: $n_lost lost, $n_back back, $n_watch peer-watch lines"
    cat "$tmp/aug.err"
fi

echo "it_heartbeat: $failures failure(s)"
[ "$failures" -eq 0 ]
