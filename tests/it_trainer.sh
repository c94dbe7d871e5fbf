#!/usr/bin/env bash
# Integration test of the trainer, on loopback with free ports, fed by the real
# loader (a labeled folder of 2,000 JPEG and PNG images the test writes with
# tests/make_images) and the real augmenter:
#  1. SimCLR, width 8, batch 32, 40 steps, checkpoints every 10: killed with
#     SIGKILL once `latest` is its step-20 checkpoint, resumed with --resume latest while
#     the same loader and augmenter keep running; ends at step 40. Checks the
#     loss falls (mean of the first 8 steps against the last 8), metrics hold
#     steps 1..40 once each, the kept checkpoints load (nntool info), `latest`
#     is step 40 with optimizer state, a test evaluator (Python PULL) gets a
#     Checkpoint for step 40, and STOP ends the loader and the augmenter.
#     With --ema 0.9: each kept checkpoint has its weights' average beside it,
#     the resumed run continues the saved one, the evaluator is given it.
#  2. RotNet (uint8 views, targets 0-3), malformed messages pushed in between,
#     SIGTERM mid-run: exit 0, a final checkpoint at the step reached, the
#     malformed messages dropped and counted, the loss finite.
#  3. A time budget: SimCLR with --minutes 0.2 ends by itself after 12 s of
#     training (within a step or two), its learning rate down to 0 at the end
#     of the cosine it planned from the rate; resumed with --minutes 0.3 it
#     trains until 18 s in all.
#  4. Bad usage exits 2: bad option values, --resume latest with nothing to
#     resume, a fresh run over an existing run folder.
# At the end no process this test started is left.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac
TRAINER="$BUILD/bin/trainer"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
NNTOOL="$BUILD/bin/nntool"
IMAGES=""      # written below
PY=/usr/bin/python3
N=2000          # images in the folder
STEPS=40
KILL_AFTER=20   # SIGKILL once this checkpoint exists

tmp=$(mktemp -d /tmp/it_trainer.XXXXXX)
pids=()
cleanup() {
    # The pids may be `timeout` wrappers: stop what they run (an augmenter
    # forwards the signal to its workers) before the wrapper itself.
    for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${pids[@]}"; do pkill -KILL -P "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

for f in "$TRAINER" "$LOADER" "$AUG" "$NNTOOL" "$BUILD/tools/make_images"; do
    [ -x "$f" ] || { echo "FAIL: $f is not built (run make)"; exit 1; }
done
IMAGES="$tmp/images"
"$BUILD/tools/make_images" --out "$IMAGES" --classes 10 --per-class $((N / 10)) --size 32 ||
    { echo "FAIL: cannot write the test images in $IMAGES"; exit 1; }
"$PY" -c 'import zmq, msgpack' 2>/dev/null || { echo "FAIL: $PY lacks zmq/msgpack (make deps)"; exit 1; }

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_file PATH SECONDS
wait_file() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# gone PID SECONDS: the process has exited (and was reaped) within SECONDS
gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# start_pipeline NAME "AUGMENTER ARGS": loader + one augmenter (2 workers)
# feeding tcp://127.0.0.1:$pull, stopped by the trainer's PUB on $ctl.
start_pipeline() {
    local name=$1 aargs=$2 lport
    lport=$(free_port)
    timeout 120 "$LOADER" --data "$IMAGES" --limit "$N" --epochs 0 --bind "tcp://127.0.0.1:$lport" \
        --control "tcp://127.0.0.1:$ctl" --quiet >"$tmp/$name.loader" 2>&1 &
    loader_pid=$!
    # shellcheck disable=SC2086
    timeout 120 "$AUG" --connect "tcp://127.0.0.1:$lport" --push "tcp://127.0.0.1:$pull" \
        --control "tcp://127.0.0.1:$ctl" --workers 2 --batch 32 $aargs --quiet >"$tmp/$name.aug" 2>&1 &
    aug_pid=$!
    pids+=("$loader_pid" "$aug_pid")
}

# check_stopped NAME: STOP from the trainer ended the loader and the augmenter
check_stopped() {
    if gone "$loader_pid" 10 && gone "$aug_pid" 10; then
        wait "$loader_pid"; local rl=$?
        wait "$aug_pid"; local ra=$?
        [ "$rl" -eq 0 ] && [ "$ra" -eq 0 ] && ok "$1: loader and augmenter exited 0 after STOP" ||
            fail "$1: loader exit $rl, augmenter exit $ra"
    else
        fail "$1: loader or augmenter still running after the trainer's STOP"
        kill -0 "$loader_pid" 2>/dev/null && { echo "  loader still running:"; cat "$tmp/$1.loader"; }
        kill -0 "$aug_pid" 2>/dev/null && { echo "  augmenter still running:"; cat "$tmp/$1.aug"; }
        tail -n 3 "$tmp/$1.loader" "$tmp/$1.aug"
    fi
}

# jcheck FILE EXPR MSG: EXPR on d = the JSON object in FILE (last line)
jcheck() {
    if "$PY" -c "import json,sys; d=json.loads(open('$1').read().strip().splitlines()[-1]); sys.exit(0 if ($2) else 1)" 2>/dev/null; then
        ok "$3"
    else
        fail "$3"
        tail -c 600 "$1"; echo
    fi
}

# ---- 1. SimCLR, SIGKILL, resume ----
pull=$(free_port); ctl=$(free_port); evp=$(free_port)
run="$tmp/simclr"
targs=(--method simclr --arch resnet-mini --width 8 --batch 32 --steps "$STEPS" --ckpt-every 10 --keep 3
       --ema 0.9 --seed 3 --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl"
       --evaluator "tcp://127.0.0.1:$evp" --out "$run" --quiet)
start_pipeline simclr "--recipe simclr --normalize cifar10"
start=$(date +%s)
"$TRAINER" "${targs[@]}" >"$tmp/t1.out" 2>"$tmp/t1.err" &
tp=$!
pids+=("$tp")
# wait_latest NAME SECONDS: `latest` points at NAME (it moves last, once a checkpoint is complete)
wait_latest() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ "$(readlink "$run/latest" 2>/dev/null)" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
if wait_latest "ckpt-$(printf %08d $KILL_AFTER).safetensors" 60; then
    kill -9 "$tp"
    wait "$tp" 2>/dev/null
    ok "simclr: killed with SIGKILL after the step-$KILL_AFTER checkpoint"
else
    fail "simclr: no step-$KILL_AFTER checkpoint within 60 s"
    cat "$tmp/t1.err"
fi
killed_at=$(wc -l <"$run/metrics.jsonl" 2>/dev/null || echo 0)
echo "   (the killed run had written $killed_at metrics lines)"
[ "$(readlink "$run/latest")" = "ckpt-$(printf %08d $KILL_AFTER).safetensors" ] &&
    ok "simclr: latest points at the step-$KILL_AFTER checkpoint" || fail "simclr: latest is $(readlink "$run/latest")"

# a test evaluator: records the Checkpoint messages it receives
cat >"$tmp/evaluator.py" <<'EOF'
import json, sys, time
import msgpack, zmq
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.bind(sys.argv[1])
got, deadline = [], time.time() + float(sys.argv[3])
while time.time() < deadline:
    if pull.poll(200):
        m = msgpack.unpackb(pull.recv(), raw=False)
        got.append({k: m.get(k) for k in ("fmt", "ver", "type", "step", "epoch", "method", "path")}
                   | {"arch_lines": len(m.get("arch", "").splitlines())})
        if m.get("step") == int(sys.argv[4]):
            break
json.dump(got, open(sys.argv[2], "w"))
EOF
"$PY" "$tmp/evaluator.py" "tcp://127.0.0.1:$evp" "$tmp/evaluator.json" 60 "$STEPS" &
ev=$!
pids+=("$ev")

timeout 120 "$TRAINER" "${targs[@]}" --resume latest >"$tmp/t2.out" 2>"$tmp/t2.err"
rc=$?
[ "$rc" -eq 0 ] && ok "simclr: resumed run exited 0" || { fail "simclr: resumed run exit $rc"; cat "$tmp/t2.err"; }
grep -q "resumed .*ckpt-$(printf %08d $KILL_AFTER).safetensors at step $KILL_AFTER" "$tmp/t2.err" &&
    ok "simclr: resumed from step $KILL_AFTER" || fail "simclr: no resume line"
grep -q "moving average starts again" "$tmp/t2.err" &&
    { fail "simclr: the resumed run did not find the weights' average"; grep average "$tmp/t2.err"; } ||
    ok "simclr: the resumed run continued the weights' average of step $KILL_AFTER"
jcheck "$tmp/t2.out" "d['end'] == 'done' and d['step'] == $STEPS and d['steps_this_run'] == $STEPS - $KILL_AFTER" \
    "simclr: the resumed run ended at step $STEPS after $((STEPS - KILL_AFTER)) more steps"
check_stopped simclr
echo "   ($(($(date +%s) - start)) s for the SimCLR phase)"

"$PY" - "$run/metrics.jsonl" "$STEPS" <<'EOF' && ok "simclr: metrics hold steps 1..$STEPS once each, the lr follows one schedule across the kill, the loss falls" || fail "simclr: metrics"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if "loss" in r]   # the step lines (not the per-epoch records)
steps = [r["step"] for r in rows]
n = int(sys.argv[2])
assert steps == list(range(1, n + 1)), steps
for r in rows:
    assert set(r) >= {"step", "epoch", "loss", "lr", "images_per_s", "data_wait"}, r
    assert math.isfinite(r["loss"]) and r["lr"] >= 0 and 0 <= r["data_wait"] <= 1, r
first = sum(r["loss"] for r in rows[:8]) / 8
last = sum(r["loss"] for r in rows[-8:]) / 8
# the schedule continues across the kill: warm-up 2 steps (5% of 40), cosine to 0 at 40
base, warm = 0.3 * 32 / 256, 2
for r in rows:
    s = r["step"] - 1
    want = base * (s + 1) / warm if s < warm else base * 0.5 * (1 + math.cos(math.pi * (s - warm) / (n - warm)))
    assert abs(r["lr"] - want) <= 1e-5 * base, (r, want)
ips = sorted(r["images_per_s"] for r in rows)[len(rows) // 2]
wait = sum(r["data_wait"] for r in rows) / len(rows)
print(f"   loss: first 8 steps {first:.3f}, last 8 steps {last:.3f}; median {ips:.0f} images/s, mean data wait {100 * wait:.1f}%")
assert last < first - 0.05, (first, last)
EOF

kept=$(cd "$run" && ls ckpt-*[0-9].safetensors 2>/dev/null | tr '\n' ' ')
[ "$kept" = "ckpt-00000020.safetensors ckpt-00000030.safetensors ckpt-00000040.safetensors " ] &&
    ok "simclr: the last 3 checkpoints are kept ($kept)" || fail "simclr: kept checkpoints: $kept"
averages=$(cd "$run" && ls ./*.ema.safetensors 2>/dev/null | tr '\n' ' ')
[ "$averages" = "./ckpt-00000020.ema.safetensors ./ckpt-00000030.ema.safetensors ./ckpt-00000040.ema.safetensors " ] &&
    ok "simclr: --ema: each kept checkpoint has its weights' average beside it" || fail "simclr: averages: $averages"
"$NNTOOL" info "$run/ckpt-00000040.ema.safetensors" >"$tmp/ema.json" 2>&1
jcheck "$tmp/ema.json" "d['step'] == $STEPS and not d['optimizer'] and d['method'] == 'simclr'" \
    "simclr: the average loads (nntool info): step $STEPS, no optimizer state"
for c in "$run"/ckpt-*.safetensors; do
    "$NNTOOL" info "$c" >"$tmp/info.json" 2>&1 || { fail "simclr: nntool info $(basename "$c") failed"; cat "$tmp/info.json"; }
done
"$NNTOOL" info "$run/latest" >"$tmp/latest.json" 2>&1
jcheck "$tmp/latest.json" "d['step'] == $STEPS and d['optimizer'] and d['method'] == 'simclr'" \
    "simclr: latest loads (nntool info): step $STEPS, simclr, with optimizer state"
"$PY" -c "
import json; s = json.load(open('$run/ckpt-00000040.json'))
assert s['step'] == $STEPS and s['total_steps'] == $STEPS and s['batch'] == 32 and s['seed'] == '3', s
" && ok "simclr: the state file records step, schedule and seed" || fail "simclr: state file"

if gone "$ev" 10; then
    "$PY" -c "
import json, os
got = json.load(open('$tmp/evaluator.json'))
last = got[-1]
assert last['type'] == 'checkpoint' and last['step'] == $STEPS and last['method'] == 'simclr', last
assert os.path.isabs(last['path']) and os.path.exists(last['path']), last
assert last['path'].endswith('ckpt-00000040.ema.safetensors'), last   # --ema: the average
assert last['arch_lines'] > 5, last
" && ok "evaluator: got the step-$STEPS Checkpoint (path, method, network description)" ||
        { fail "evaluator: Checkpoint messages"; cat "$tmp/evaluator.json"; }
else
    fail "evaluator: no step-$STEPS Checkpoint within 60 s"
fi

# ---- 2. RotNet, malformed messages, SIGTERM ----
pull=$(free_port); ctl=$(free_port)
run="$tmp/rotnet"
"$TRAINER" --method rotnet --width 8 --batch 16 --steps 100000 --ckpt-every 1000 \
    --bind "tcp://127.0.0.1:$pull" --control "tcp://127.0.0.1:$ctl" --evaluator none --out "$run" \
    >"$tmp/t3.out" 2>"$tmp/t3.err" &
tp=$!
pids+=("$tp")
for _ in $(seq 100); do grep -q "listening on" "$tmp/t3.err" && break; sleep 0.1; done
"$PY" - "tcp://127.0.0.1:$pull" <<'EOF'
import sys, msgpack, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH); s.setsockopt(zmq.LINGER, 5000); s.connect(sys.argv[1])
head = {"fmt": "sslpipe", "ver": 1, "type": "viewbatch"}
s.send(b"\x00not msgpack")
s.send(msgpack.packb(dict(head, dtype="u8", views=4, channels=3, height=32, width=32)))   # no samples
s.send(msgpack.packb(dict(head, dtype="u8", views=4, channels=3, height=8, width=8, samples=[
    {"index": 0, "epoch": 0, "label": 1, "targets": [0, 1, 2, 3], "data": bytes(100)}])))  # wrong size
s.send(msgpack.packb(dict(head, ver=2)))   # another protocol version
s.close()
ctx.term()   # waits (up to the linger) until the messages are delivered
EOF
start_pipeline rotnet "--recipe rotnet --dtype u8"   # after the junk, so that all of it is read
for _ in $(seq 100); do
    [ "$(wc -l <"$run/metrics.jsonl" 2>/dev/null || echo 0)" -ge 15 ] && break
    sleep 0.2
done
kill -TERM "$tp"
wait "$tp"
rc=$?
[ "$rc" -eq 0 ] && ok "rotnet: SIGTERM, exit 0" || { fail "rotnet: exit $rc after SIGTERM"; cat "$tmp/t3.err"; }
jcheck "$tmp/t3.out" "d['end'] == 'signal' and d['step'] >= 15 and d['dropped'] >= 4 and d['loss'] > 0" \
    "rotnet: stopped by the signal after 15+ steps, 4 malformed messages dropped and counted"
laststep=$(grep '"loss"' "$run/metrics.jsonl" | tail -n 1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["step"])')
"$NNTOOL" info "$run/latest" >"$tmp/rot.json" 2>&1
jcheck "$tmp/rot.json" "d['step'] == $laststep and d['method'] == 'rotnet'" \
    "rotnet: final checkpoint written at the step reached ($laststep)"
grep -q "dropped .* message" "$tmp/t3.err" && ok "rotnet: the drop is logged" || fail "rotnet: no drop log"
check_stopped rotnet

# ---- 3. a time budget ----
# budget_run NAME SECONDS TRAINER-ARGS...: a pipeline and the trainer; checks
# it ends by itself after SECONDS of training in all (the last step may go
# over by a few seconds on a slow machine), with the lr at the end near 0
budget_run() {
    local name=$1 want=$2
    shift 2
    pull=$(free_port); ctl=$(free_port)
    start_pipeline "$name" "--recipe simclr"
    timeout 120 "$TRAINER" --method simclr --width 8 --batch 32 --ckpt-every 1000 --bind "tcp://127.0.0.1:$pull" \
        --control "tcp://127.0.0.1:$ctl" --evaluator none --out "$run" --quiet "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err"
    local rc=$?
    [ "$rc" -eq 0 ] && ok "$name: exit 0" || { fail "$name: exit $rc"; tail -n 5 "$tmp/$name.err"; }
    jcheck "$tmp/$name.out" "d['end'] == 'done'" "$name: ended by its time budget"
    grep '"loss"' "$run/metrics.jsonl" | tail -n 1 >"$tmp/$name.last"
    jcheck "$tmp/$name.last" "$want - 1.5 <= d['time'] <= $want + 4 and d['lr'] < 0.002" \
        "$name: the last step at ${want} s of training in all, lr near 0"
    grep -q "time budget: .* steps in .* of the" "$tmp/$name.err" && ok "$name: the budget is logged" ||
        fail "$name: no time budget line"
    check_stopped "$name"
}
run="$tmp/budget"
budget_run budget 12 --minutes 0.2
first=$(grep -c '"loss"' "$run/metrics.jsonl")
state=$(readlink -f "$run/latest")
"$PY" -c "import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(0 if d['minutes'] == 0.2 and d['step'] == $first else 1)" "${state%.safetensors}.json" &&
    ok "budget: the state records the budget" || fail "budget: the state records no budget"
budget_run budget-resumed 18 --resume latest --minutes 0.3
[ "$(grep -c '"loss"' "$run/metrics.jsonl")" -gt "$first" ] && ok "budget-resumed: trained on from step $first" ||
    fail "budget-resumed: no step after $first"

# ---- 4. bad usage ----
usage() {
    local want=$1; shift
    "$TRAINER" "$@" --bind "tcp://127.0.0.1:$(free_port)" --control none --evaluator none \
        >"$tmp/u.out" 2>"$tmp/u.err"
    local rc=$?
    [ "$rc" -eq "$want" ] && ok "usage: $* -> exit $want" || { fail "usage: $* -> exit $rc, want $want"; cat "$tmp/u.err"; }
}
usage 2 --method byol
usage 2 --steps 0
usage 2 --epochs 2 --steps 5
usage 2 --minutes 2 --epochs 5
usage 2 --minutes -1
usage 2 --arch "$tmp/no-such-network.txt" --out "$tmp/u1"
usage 2 --resume latest --out "$tmp/empty"
usage 2 --steps 5 --out "$tmp/simclr"          # already holds a run
usage 2 --resume latest --out "$tmp/simclr" --batch 64   # conflicts with the run
"$TRAINER" --help >"$tmp/help" 2>&1 && grep -q -- "--resume" "$tmp/help" && ok "--help exits 0" || fail "--help"

# ---- no process left ----
left=0
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
[ "$left" -eq 0 ] && ok "no process left" || fail "$left process(es) still running"

echo "it_trainer: $failures failure(s)"
[ "$failures" -eq 0 ]
