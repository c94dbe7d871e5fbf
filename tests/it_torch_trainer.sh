#!/usr/bin/env bash
# The PyTorch trainer (examples/torch_trainer) in the C trainer's place, on
# loopback with free ports, on the CPU: Fashion-MNIST limited to N images.
#  a. The loader (--exactly-once), two augmenter processes, the PyTorch
#     trainer (SimCLR, resnet-mini width 4) for EPOCHS epochs and the C
#     evaluator serving: the loss falls; every epoch is complete with its N
#     samples trained exactly once (metrics.jsonl epoch records, as the C
#     trainer writes them); the Checkpoints it pushed are evaluated by the C
#     evaluator; its STOP ends every stage, all with exit status 0.
#  e. (after b) The PyTorch trainer resumes its own run (--resume latest)
#     for one more epoch: steps and epoch records continue, every epoch
#     complete.
#  b. A PyTorch checkpoint read by the C tools: `nntool info` and
#     `evaluator --checkpoint` (a probe accuracy above chance).
#  c. A C checkpoint in PyTorch: the network built from the checkpoint's
#     description gives the embeddings `nntool embed` computes (features and
#     projections within 1e-4 relative).
#  d. The C trainer trains 2 epochs, the PyTorch trainer resumes its
#     checkpoint (--resume) and trains the third: its first losses continue
#     from the C run's level (below the C run's start), and the run ends with
#     all 3 epochs complete, each sample trained once.
#  f. ./run.sh --trainer torch runs the whole pipeline with it for an epoch:
#     exit 0, the epoch complete, the final checkpoint evaluated.
#  g. ./run.sh --trainer torch --minutes 0.2: the loader streams until the
#     trainer stops, and the trainer ends by itself after 12 s of training
#     (within a few seconds), its learning rate down near 0, the final
#     checkpoint evaluated.
#  h. --loss or --tau with --method rotnet: exit 2 with a message naming it.
set -u
. "$(dirname "$0")/lib.sh"

LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
EVAL="$BUILD/bin/evaluator"
NNTOOL="$BUILD/bin/nntool"
TT="$root/examples/torch_trainer/torch_trainer.py"
N=512
BATCH=64
EPOCHS=3
STEPS=$((N * EPOCHS / BATCH))
SMALL_EVAL=(--no-baselines --attention 0 --classmap 0 --no-report --max-train 400 --max-test 200
    --align-items 64 --label-fraction "0.1,1" --probe-iters 200 --batch 64)

require_built "$LOADER" "$AUG" "$TRAINER" "$EVAL" "$NNTOOL"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }
"$PY" -c 'import torch, zmq, msgpack, numpy' 2>/dev/null ||
    { echo "FAIL: $PY cannot import torch, zmq, msgpack, numpy (make deps installs python3-torch ...)"; exit 1; }

start_loader() {   # NAME [OPTION...]
    local name=$1; shift
    loader_log=$tmp/$name.log
    "$LOADER" --data "$FMNIST" --limit "$N" --exactly-once --seed 5 --bind "tcp://127.0.0.1:$lp" \
        --control "tcp://127.0.0.1:$cp" "$@" >"$loader_log" 2>&1 &
    loader_pid=$!
    pids+=("$loader_pid")
}

start_augmenters() {   # NAME: two augmenter processes of one worker each
    aug_pids=()
    local i
    for i in 1 2; do
        "$AUG" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
            --workers 1 --batch 32 --size 28 --channels 1 --seed 5 --quiet >"$tmp/$1.aug$i.log" 2>&1 &
        aug_pids+=($!)
        pids+=($!)
    done
}

# exits_zero NAME PID SECONDS [LOG]: the process ended within SECONDS with
# status 0 (else the end of LOG is shown)
exits_zero() {
    if ! gone "$2" "$3"; then
        fail "$1 still running after $3 s"
        [ -n "${4:-}" ] && tail -n 8 "$4"
        return 1
    fi
    local rc=0
    wait "$2" || rc=$?
    [ "$rc" -eq 0 ] || { fail "$1 exited with status $rc"; [ -n "${4:-}" ] && tail -n 8 "$4"; return 1; }
}

# check_epochs RUN [EPOCHS]: every epoch complete with N distinct samples and
# one record; steps 1..EPOCHS x N / BATCH; all samples trained once
check_epochs() {
    local epochs=${2:-$EPOCHS}
    "$PY" - "$tmp/$1/metrics.jsonl" "$N" "$epochs" "$((N * epochs / BATCH))" "$BATCH" 1 <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, epochs, steps, batch, first = (int(a) for a in sys.argv[2:7])
steprows = [r for r in rows if "loss" in r]
records = [r for r in rows if r.get("record") == "epoch"]
assert [r["step"] for r in steprows] == list(range(first, steps + 1)), [r["step"] for r in steprows]
by_epoch = {r["epoch"]: r for r in records}
assert sorted(by_epoch) == list(range(epochs)) and len(records) == epochs, records
for e, r in sorted(by_epoch.items()):
    assert r["complete"] and r["distinct"] == n and r["expected"] == n, r
assert sum(r["distinct"] for r in records) == steps * batch, (sum(r["distinct"] for r in records), steps * batch)
print("   epochs %s: %d distinct samples each, %d duplicate(s) dropped" % (
    sorted(by_epoch), n, sum(r["duplicates"] for r in records)))
EOF
}

# ---- a. the pipeline with the PyTorch trainer and the C evaluator ----
lp=$(free_port); tp=$(free_port); cp=$(free_port); ep=$(free_port)
nice -n 5 "$EVAL" --bind "tcp://127.0.0.1:$ep" --control "tcp://127.0.0.1:$cp" --out "$tmp/a-eval" \
    "${SMALL_EVAL[@]}" >"$tmp/a.eval.log" 2>&1 &
eval_pid=$!
pids+=("$eval_pid")
"$PY" "$TT" --method simclr --arch resnet-mini --width 4 --batch "$BATCH" --epochs "$EPOCHS" --dataset-size "$N" \
    --ckpt-every 8 --device cpu --threads 1 --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
    --evaluator "tcp://127.0.0.1:$ep" --out "$tmp/a" --quiet >"$tmp/a.out" 2>"$tmp/a.err" &
trainer_pid=$!
pids+=("$trainer_pid")
start_loader a.loader --epochs "$EPOCHS"
start_augmenters a
if exits_zero "a: the PyTorch trainer" "$trainer_pid" 150; then
    ok "a: the PyTorch trainer exited 0: $(tail -n 1 "$tmp/a.out")"
else
    tail -n 5 "$tmp/a.err"
fi
check_epochs a && ok "a: every epoch complete, $N distinct samples each, trained once" ||
    { fail "a: epoch records"; grep '"record"' "$tmp/a/metrics.jsonl"; }
"$PY" - "$tmp/a/metrics.jsonl" <<'EOF' && ok "a: the loss falls" || fail "a: the loss does not fall"
import json, sys
loss = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
print("   loss: first three %.3f, last three %.3f" % (first, last))
assert last < first - 0.05, (first, last)
EOF
exits_zero "a: the loader" "$loader_pid" 15 "$loader_log" && ok "a: the loader exited 0 on the trainer's STOP"
for p in "${aug_pids[@]}"; do exits_zero "a: an augmenter" "$p" 15; done && ok "a: both augmenters exited 0"
exits_zero "a: the evaluator" "$eval_pid" 120 && ok "a: the evaluator exited 0 after the STOP"
"$PY" - "$tmp/a-eval/eval.jsonl" "$STEPS" <<'EOF' && ok "a: the C evaluator evaluated the pushed checkpoints" ||
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
last = max(rows, key=lambda r: r["step"]) if rows else None   # the newest is evaluated first
assert last and last["step"] == int(sys.argv[2]) and last["method"] == "simclr", rows
print("   evaluated steps %s; the last: probe %.3f, kNN %.3f" % ([r["step"] for r in rows], last["probe_top1"],
                                                            last["knn_top1"]))
EOF
    { fail "a: the evaluator's eval.jsonl"; tail -n 5 "$tmp/a.eval.log"; }
[ "$(readlink "$tmp/a/latest")" = "ckpt-$(printf %08d "$STEPS").safetensors" ] && ok "a: latest -> the last checkpoint" ||
    fail "a: latest is $(readlink "$tmp/a/latest")"

# ---- b. the PyTorch checkpoint read by the C tools ----
info=$("$NNTOOL" info "$tmp/a/latest" 2>&1)
echo "$info" | grep -q "\"step\": $STEPS" && echo "$info" | grep -q '"optimizer": true' &&
    ok "b: nntool info reads it: $info" || fail "b: nntool info: $info"
if nice -n 5 "$EVAL" --checkpoint "$tmp/a/latest" --out "$tmp/b" "${SMALL_EVAL[@]}" >"$tmp/b.log" 2>&1; then
    "$PY" - "$tmp/b/eval.jsonl" <<'EOF' && ok "b: evaluator --checkpoint on the PyTorch checkpoint" ||
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("   probe top-1 %.3f, kNN top-1 %.3f" % (r["probe_top1"], r["knn_top1"]))
assert r["probe_top1"] > 0.3, r["probe_top1"]      # 10 classes: chance is 0.1
EOF
        fail "b: its eval.jsonl"
else
    fail "b: evaluator --checkpoint failed"; tail -n 5 "$tmp/b.log"
fi

# ---- e. the PyTorch trainer resumes its own run for a fourth epoch ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
"$PY" "$TT" --resume latest --out "$tmp/a" --epochs $((EPOCHS + 1)) --device cpu --threads 1 \
    --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" --evaluator none --quiet \
    >"$tmp/e.out" 2>"$tmp/e.err" &
trainer_pid=$!
pids+=("$trainer_pid")
start_loader e.loader --epochs 1 --start-epoch "$EPOCHS"
start_augmenters e
exits_zero "e: the resumed PyTorch trainer" "$trainer_pid" 90 && ok "e: the PyTorch trainer resumed its own run" ||
    tail -n 5 "$tmp/e.err"
check_epochs a $((EPOCHS + 1)) && ok "e: steps 1..$((N * (EPOCHS + 1) / BATCH)), epochs 0-$EPOCHS complete, trained once" ||
    { fail "e: epoch records"; grep '"record"' "$tmp/a/metrics.jsonl"; }
exits_zero "e: the loader" "$loader_pid" 15 "$loader_log"
for p in "${aug_pids[@]}"; do exits_zero "e: an augmenter" "$p" 15; done

# ---- c. a C checkpoint in PyTorch: the same embeddings ----
"$NNTOOL" init --net resnet-mini --width 4 --head simclr --input 1x28x28 --train-steps 3 \
    --out "$tmp/c.safetensors" >"$tmp/c.log" 2>&1 &&
    "$NNTOOL" embed "$tmp/c.safetensors" --images 6 --out "$tmp/c.emb.safetensors" >>"$tmp/c.log" 2>&1 ||
    fail "c: nntool init/embed: $(tail -n 3 "$tmp/c.log")"
"$PY" - "$root/examples/torch_trainer" "$tmp/c.safetensors" "$tmp/c.emb.safetensors" <<'EOF' &&
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
import sslnet
meta = sslnet.read_meta(sys.argv[2])
net = sslnet.Net(meta["nn_desc"])
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
sslnet.load_checkpoint(sys.argv[2], net, opt, torch.device("cpu"))
assert all("momentum_buffer" in opt.state[p] for p in net.parameters()), "momentum not restored"
got, _ = sslnet.read_safetensors(sys.argv[3])
net.eval()
with torch.no_grad():
    x = torch.from_numpy(got["input"])
    mine = {"features": net.features(x).numpy(), "output": net(x).numpy()}
for k in ("features", "output"):
    rel = np.linalg.norm(mine[k] - got[k]) / np.linalg.norm(got[k])
    print("   %s %s: relative difference %.2e" % (k, got[k].shape, rel))
    assert rel < 1e-4, (k, rel)
EOF
    ok "c: a C checkpoint gives the C embeddings in PyTorch" || fail "c: embeddings differ"

# ---- d. the C trainer for 2 epochs, the PyTorch trainer resumes it for the third ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
C_STEPS=$((N * 2 / BATCH))
"$TRAINER" --method simclr --arch resnet-mini --width 4 --batch "$BATCH" --steps "$C_STEPS" \
    --dataset-size "$N" --ckpt-every 1000 --bind "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
    --evaluator none --out "$tmp/d" --quiet >"$tmp/d.c.out" 2>"$tmp/d.c.err" &
trainer_pid=$!
pids+=("$trainer_pid")
start_loader d.loader1 --epochs 2
start_augmenters d1
exits_zero "d: the C trainer" "$trainer_pid" 90 && ok "d: the C trainer trained $C_STEPS steps" || tail -n 5 "$tmp/d.c.err"
exits_zero "d: the first loader" "$loader_pid" 15 "$loader_log"
for p in "${aug_pids[@]}"; do gone "$p" 15; done
lp=$(free_port); tp=$(free_port); cp=$(free_port)
"$PY" "$TT" --resume "$tmp/d/latest" --out "$tmp/d" --epochs "$EPOCHS" --device cpu --threads 1 --bind "tcp://127.0.0.1:$tp" \
    --control "tcp://127.0.0.1:$cp" --evaluator none --quiet >"$tmp/d.t.out" 2>"$tmp/d.t.err" &
trainer_pid=$!
pids+=("$trainer_pid")
start_loader d.loader2 --epochs 1 --start-epoch 2
start_augmenters d2
exits_zero "d: the PyTorch trainer" "$trainer_pid" 90 && ok "d: the PyTorch trainer resumed the C checkpoint" ||
    tail -n 5 "$tmp/d.t.err"
grep -q "resumed .*ckpt-$(printf %08d "$C_STEPS").safetensors at step $C_STEPS" "$tmp/d.t.err" ||
    fail "d: no 'resumed' line: $(head -3 "$tmp/d.t.err")"
check_epochs d && ok "d: epochs 0-1 (C) and 2 (PyTorch) complete, each sample trained once" ||
    { fail "d: epoch records"; grep '"record"' "$tmp/d/metrics.jsonl"; }
"$PY" - "$tmp/d/metrics.jsonl" "$C_STEPS" <<'EOF' && ok "d: the loss continues from the C run's level" ||
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
c = [r["loss"] for r in rows if r["step"] <= int(sys.argv[2])]
t = [r["loss"] for r in rows if r["step"] > int(sys.argv[2])]
c_first, c_last, t_first = sum(c[:3]) / 3, sum(c[-3:]) / 3, sum(t[:3]) / 3
print("   C trainer: first three %.3f, last three %.3f; PyTorch after the resume: first three %.3f"
      % (c_first, c_last, t_first))
assert c_last < c_first - 0.05, "the C run did not learn"
assert t_first < (c_first + c_last) / 2, "the resumed run starts near the untrained loss"
EOF
    fail "d: the losses"
exits_zero "d: the second loader" "$loader_pid" 15 "$loader_log"
for p in "${aug_pids[@]}"; do exits_zero "d: an augmenter" "$p" 15; done

# ---- f. run.sh --trainer torch ----
# four consecutive free ports: loader, trainer, evaluator, control
port_base() {
    local base p
    for _ in $(seq 1 50); do
        base=$((20000 + RANDOM % 40000))
        for p in 0 1 2 3; do
            "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', $base + $p))" 2>/dev/null || continue 2
        done
        echo "$base"
        return 0
    done
    return 1
}
if base=$(port_base); then
    BUILD="$BUILD" timeout 120 "$root/run.sh" --no-build --trainer torch --epochs 1 --width 4 --batch "$BATCH" \
        --augmenters 2 --port-base "$base" --out "$tmp/f" --loader-opts "--limit $N" \
        --trainer-opts "--device cpu --threads 1 --quiet" --evaluator-opts "${SMALL_EVAL[*]}" >"$tmp/f.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] && ok "f: run.sh --trainer torch exited 0" || { fail "f: run.sh exit $rc"; tail -n 20 "$tmp/f.log"; }
    grep -q '"record":"epoch","epoch":0,"distinct":'"$N"',.*"complete":true' "$tmp/f/metrics.jsonl" 2>/dev/null &&
        ok "f: epoch 0 complete, $N distinct samples" || fail "f: no complete record for epoch 0"
    grep -q "\"step\":$((N / BATCH)),.*probe_top1" "$tmp/f/eval.jsonl" 2>/dev/null &&
        ok "f: the final checkpoint (step $((N / BATCH))) evaluated" || { fail "f: eval.jsonl"; tail -n 5 "$tmp/f.log"; }
else
    fail "f: no four consecutive free ports"
fi

# ---- g. run.sh --trainer torch --minutes ----
if base=$(port_base); then
    BUILD="$BUILD" timeout 120 "$root/run.sh" --no-build --trainer torch --minutes 0.2 --width 4 --batch "$BATCH" \
        --port-base "$base" --out "$tmp/g" --loader-opts "--limit $N" \
        --trainer-opts "--device cpu --threads 1 --quiet" --evaluator-opts "${SMALL_EVAL[*]}" >"$tmp/g.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] && ok "g: run.sh --minutes 0.2 exited 0" || { fail "g: run.sh exit $rc"; tail -n 20 "$tmp/g.log"; }
    "$PY" - "$tmp/g/metrics.jsonl" "$tmp/g/eval.jsonl" <<'EOF' && ok "g: 12 s of training, lr near 0 at the end, evaluated" ||
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
last = rows[-1]
print("   %d steps, the last at %.1f s of training, lr %.2g" % (len(rows), last["time"], last["lr"]))
assert rows[0]["lr"] == 0.0 and 10.5 <= last["time"] <= 16 and last["lr"] < 0.002, last
ev = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
assert any(e["step"] == last["step"] and "probe_top1" in e for e in ev), ev
EOF
        { fail "g: the time budget"; tail -n 5 "$tmp/g.log"; }
    grep -q "time budget: .* steps in" "$tmp/g.log" && ok "g: the budget is logged" || fail "g: no budget line"
else
    fail "g: no four consecutive free ports"
fi

# ---- h. SimCLR's loss settings with another method: a usage error, as the C trainer's ----
for opt in "--loss dcl" "--tau 0.2"; do
    rc=0
    # shellcheck disable=SC2086
    "$PY" "$TT" --method rotnet $opt --out "$tmp/h" >"$tmp/h.out" 2>"$tmp/h.err" </dev/null || rc=$?
    if [ "$rc" -eq 2 ] && grep -q "^torch_trainer: ${opt%% *} is SimCLR's contrastive loss setting" "$tmp/h.err"; then
        ok "h: --method rotnet $opt: exit 2, $(head -n 1 "$tmp/h.err" | cut -c 1-90)"
    else
        fail "h: --method rotnet $opt: exit $rc"; head -n 3 "$tmp/h.err"
    fi
done

if [ "$failures" -gt 0 ]; then
    echo "it_torch_trainer: $failures failure(s)"
    exit 1
fi
echo "it_torch_trainer: all checks passed [${SECONDS}s]"
