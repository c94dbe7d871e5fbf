#!/usr/bin/env bash
# Integration test of the evaluator on loopback, with checkpoints made by
# nntool and Fashion-MNIST (Debian's dataset-fashion-mnist), small subsets:
#  1. server mode: a Checkpoint message naming a corrupt file gets a clear
#     error (the file, what is wrong) and the server keeps serving; a message
#     naming a truncated file, one carrying garbage bytes, and a good
#     checkpoint after them: the good one is evaluated (one line in
#     eval.jsonl); Control STOP on the same socket ends it with status 0;
#  1b. with --control: of two checkpoints waiting at the trainer's STOP (on
#     its PUB socket), the newest is evaluated and fine-tuned
#     (--finetune-per-class), the older one skipped with a log line, then the
#     evaluator exits 0 by itself; with --after-stop all both are evaluated,
#     the newest first and alone fine-tuned;
#  2. `evaluator --checkpoint` on a small checkpoint finishes and writes
#     eval.jsonl (probe, few labels, kNN, align/uniform, both baselines, the
#     class map's numbers), report/summary.txt, the attention-map and the
#     class-map PNGs, and caches both baselines (--baseline-cache);
#  2b. a second evaluation with the same data and options takes both
#     baselines from the cache (log line, "cached": true), same numbers;
#     with --feature-views one: raw pixels from the cache, the random encoder
#     computed for those views, each record naming its views;
#  2c. a corrupt cache file is ignored with a log line, the baseline is
#     computed again (same numbers) and the file replaced;
#  2d. a server with that cache has the raw-pixel baseline ready before any
#     checkpoint arrives (from the cache, on its background thread), and
#     SIGTERM ends it with status 0;
#  2e. a server without cache, sent a checkpoint right away (while its
#     background thread decodes and computes the raw-pixel baseline), writes
#     the same baselines as 2;
#  2f. `evaluator --compare A B` writes compare.png (a SimCLR and a RotNet
#     checkpoint side by side) of a plausible size; one checkpoint is a usage error;
#  3. `evaluator --checkpoint` on a corrupt file exits 1 with the reason.
# Needs python3-zmq and python3-msgpack (make deps) to play the trainer.
set -euo pipefail
BUILD=${BUILD:-build}
ev="$BUILD/bin/evaluator"
tool="$BUILD/bin/nntool"
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "it_evaluator: FAIL: $*" >&2; [ -f "$tmp/server.log" ] && sed 's/^/    /' "$tmp/server.log" >&2; exit 1; }

for f in "$ev" "$tool"; do [ -x "$f" ] || fail "$f not built (make)"; done
"$py" -c 'import zmq, msgpack' 2>/dev/null || fail "$py cannot import zmq and msgpack (make deps)"
[ -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || fail "no Fashion-MNIST (apt-get install dataset-fashion-mnist)"

small=(--max-train 400 --max-test 200 --align-items 64 --label-fraction "0.1,1" --probe-iters 200 --batch 64)
"$tool" init --net resnet-mini --width 2 --head simclr --input 1x28x28 --train-steps 1 --seed 3 \
    --out "$tmp/good.safetensors" >/dev/null
size=$(stat -c %s "$tmp/good.safetensors")
head -c $((size / 2)) "$tmp/good.safetensors" > "$tmp/truncated.safetensors"
cp "$tmp/good.safetensors" "$tmp/flipped.safetensors"
printf '\x55\xaa\x55\xaa' | dd of="$tmp/flipped.safetensors" bs=1 seek=$((size - 64)) conv=notrunc 2>/dev/null

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ep="tcp://127.0.0.1:$port"

# ---- 1. server mode
"$ev" --bind "$ep" --out "$tmp/out" --no-baselines --attention 0 "${small[@]}" >"$tmp/server.log" 2>&1 &
pid=$!

# send KIND STEP PATH: pushes a Checkpoint message (path, or bytes when KIND is bytes) or a Control STOP
send() {
    "$py" - "$ep" "$@" <<'PY'
import sys, time, zmq, msgpack
ep, kind = sys.argv[1], sys.argv[2]
head = {"fmt": "sslpipe", "ver": 1}
if kind == "stop":
    m = dict(head, type="control", kind="stop", sender="it_evaluator@test:1", epoch=0, count=0)
else:
    step, path = int(sys.argv[3]), sys.argv[4]
    m = dict(head, type="checkpoint", step=step, epoch=0, method="simclr", arch="nn 1")
    if kind == "bytes":
        m["bytes"] = open(path, "rb").read()
    else:
        m["path"] = path
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
s.setsockopt(zmq.LINGER, 30000)
s.connect(ep)
s.send(msgpack.packb(m, use_bin_type=True))
s.close()
ctx.term()      # returns once the message is handed over (or the linger ran out)
PY
}
# wait_for PATTERN FILE SECONDS
wait_for() {
    local _
    for _ in $(seq 1 $(($3 * 10))); do
        grep -q -- "$1" "$2" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || fail "evaluator exited while waiting for '$1'"
        sleep 0.1
    done
    fail "no '$1' in $2 after $3 s"
}

wait_for "listening on" "$tmp/server.log" 30
send path 5 "$tmp/flipped.safetensors"
wait_for "step 5 not evaluated" "$tmp/server.log" 60
grep -q "checksum mismatch" "$tmp/server.log" || fail "the corrupt checkpoint's error does not say why"
grep -q "still serving" "$tmp/server.log" || fail "no 'still serving' after the corrupt checkpoint"
send path 6 "$tmp/truncated.safetensors"
wait_for "step 6 not evaluated" "$tmp/server.log" 30
grep -q "truncated" "$tmp/server.log" || fail "the truncated checkpoint's error does not say so"
head -c 5000 /dev/urandom > "$tmp/noise"
send bytes 8 "$tmp/noise"
wait_for "step 8 not evaluated" "$tmp/server.log" 30
send path 7 "$tmp/good.safetensors"
wait_for "good.safetensors" "$tmp/out/eval.jsonl" 90     # its line (step 1: the file's own step)
send stop
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with status $rc after STOP"
[ "$(wc -l < "$tmp/out/eval.jsonl")" -eq 1 ] || fail "eval.jsonl should hold exactly the good checkpoint"
ls "$tmp/out"/.incoming-* >/dev/null 2>&1 && fail "the received bytes were not cleaned up"
echo "it_evaluator: server: corrupt, truncated and garbage checkpoints refused with reasons, the good one evaluated"

# ---- 1b. STOP on the control socket right after the last checkpoints
# stop_case OUT [OPTION...]: an evaluator with --control is frozen while two
# checkpoints (steps 5 and 9) and the trainer's STOP are sent, then continued
stop_case() {
    local out=$1; shift
    local cport
    cport=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$ev" --bind "$ep" --control "tcp://127.0.0.1:$cport" --out "$out" --no-baselines --attention 0 "${small[@]}" \
        --finetune-per-class 2 --finetune-epochs 1 "$@" >"$tmp/server.log" 2>&1 &
    pid=$!
    wait_for "listening on" "$tmp/server.log" 30
    cp "$tmp/good.safetensors" "$tmp/five.safetensors"
    cp "$tmp/good.safetensors" "$tmp/nine.safetensors"
    "$py" - "$ep" "tcp://127.0.0.1:$cport" "$tmp" "$pid" <<'PY'
import os, signal, sys, time, zmq, msgpack
ep, control, folder, pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
head = {"fmt": "sslpipe", "ver": 1}
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.bind(control)
push = ctx.socket(zmq.PUSH)
push.setsockopt(zmq.LINGER, 30000)
push.connect(ep)
beat = msgpack.packb(dict(head, type="control", kind="heartbeat", sender="trainer@test:1", epoch=0, count=0))
for _ in range(10):        # let the subscription arrive (PUB drops messages before it)
    pub.send(beat)
    time.sleep(0.1)
os.kill(pid, signal.SIGSTOP)   # all three wait for it, as when it is busy
for step, name in ((5, "five"), (9, "nine")):
    push.send(msgpack.packb(dict(head, type="checkpoint", step=step, epoch=0, method="simclr", arch="nn 1",
                                 path=f"{folder}/{name}.safetensors")))
stop = msgpack.packb(dict(head, type="control", kind="stop", sender="trainer@test:1", epoch=0, count=0))
for _ in range(5):
    pub.send(stop)
    time.sleep(0.1)
os.kill(pid, signal.SIGCONT)
push.close()
pub.close()
ctx.term()
PY
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && fail "the evaluator did not exit after STOP on --control"
    local rc=0
    wait "$pid" || rc=$?
    pid=""
    [ "$rc" -eq 0 ] || fail "exit status $rc after STOP on --control"
    grep -q "nine.safetensors" "$out/eval.jsonl" 2>/dev/null || fail "the checkpoint sent before STOP was not evaluated"
    grep -q "heartbeat\|ignoring" "$tmp/server.log" && fail "control-socket chatter was logged"
    return 0
}

# the default (--after-stop final): the trainer's last checkpoint evaluated and
# fine-tuned, the older one still waiting skipped with a log line
stop_case "$tmp/out2"
"$py" - "$tmp/out2/eval.jsonl" <<'PY' || fail "after STOP: not only the last checkpoint, fine-tuned"
import json, sys
recs = {r["checkpoint"].rsplit("/", 1)[1]: r for r in map(json.loads, open(sys.argv[1]))}
assert sorted(recs) == ["nine.safetensors"], sorted(recs)
(e,) = recs["nine.safetensors"]["finetune"]
assert e["subset"] == "2/class" and e["labels"] == 20 and len(e["subset_hash"]) == 16, e
for k in ("scratch_top1", "probe_top1", "finetune_top1"):
    assert 0 <= e[k] <= 1, (k, e[k])
assert e["steps"] >= 100 and e["seconds"] > 0, e
PY
grep -q "checkpoint step 5 (.*five.safetensors) skipped: the trainer stopped" "$tmp/server.log" ||
    fail "no log line for the skipped checkpoint of step 5"
echo "it_evaluator: --control: after STOP the last checkpoint evaluated and fine-tuned, the older one skipped, a clean exit"

# --after-stop all: both evaluated, the last one first and alone fine-tuned
stop_case "$tmp/out3" --after-stop all
"$py" - "$tmp/out3/eval.jsonl" <<'PY' || fail "--after-stop all: not both checkpoints, the last one fine-tuned"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = [r["checkpoint"].rsplit("/", 1)[1] for r in rows]
assert names == ["nine.safetensors", "five.safetensors"], names
assert "finetune" in rows[0] and "finetune" not in rows[1], "not only the last checkpoint fine-tuned"
PY
echo "it_evaluator: --after-stop all: both waiting checkpoints evaluated, newest first, the last one fine-tuned"

# ---- 2. one file
cache="$tmp/cache"
"$ev" --checkpoint "$tmp/good.safetensors" --out "$tmp/one" --attention 3 --baseline-cache "$cache" "${small[@]}" \
    >"$tmp/one.log" 2>&1 || { cat "$tmp/one.log" >&2; fail "--checkpoint failed"; }
for b in "raw pixels" "random encoder"; do
    grep -q "$b: baseline cached in $cache/" "$tmp/one.log" || { cat "$tmp/one.log" >&2; fail "$b: not cached"; }
done
"$py" - "$tmp/one/eval.jsonl" <<'PY' || fail "eval.jsonl of --checkpoint is incomplete"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
r = json.loads(lines[0])
for key in ("step", "epoch", "method", "probe_top1", "probe_top5", "knn_top1", "align", "uniform"):
    assert key in r, key
assert r["step"] == 1 and r["n_train"] == 400 and r["n_test"] == 200, r
assert [f["fraction"] for f in r["label_fractions"]] == [0.1, 1.0]
assert r["label_fractions"][0]["n_labels"] == 40
for b in ("raw_pixels", "random_encoder"):
    assert 0.1 < r["baselines"][b]["probe"]["top1"] <= 1.0, b
assert 0.0 <= r["align"] <= 4.0 and -4.0 <= r["uniform"] <= 0.0
png = r["classmap_png"]
assert png.endswith("/report/classmap-00000001.png"), png
assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", png
cm = r["classmap"]
assert cm["points"] == 200 and cm["k"] == 10, cm
for rep in (cm, cm["random_encoder"], cm["raw_pixels"]):
    assert 0.0 <= rep["tsne_knn_purity"] <= 1.0 and 0.0 <= rep["pca_knn_purity"] <= 1.0, rep
    assert -1.0 <= rep["silhouette"] <= 1.0, rep
assert cm["raw_pixels"]["tsne_knn_purity"] > 0.2, cm     # 10 classes: chance is about 0.1
print("it_evaluator: class map: t-SNE purity %.3f, PCA %.3f, silhouette %.3f (raw pixels %.3f / %.3f / %.3f)" % (
    cm["tsne_knn_purity"], cm["pca_knn_purity"], cm["silhouette"], cm["raw_pixels"]["tsne_knn_purity"],
    cm["raw_pixels"]["pca_knn_purity"], cm["raw_pixels"]["silhouette"]))
print("it_evaluator: one file: probe %.3f, kNN %.3f, raw pixels %.3f, random encoder %.3f" % (
    r["probe_top1"], r["knn_top1"], r["baselines"]["raw_pixels"]["probe"]["top1"],
    r["baselines"]["random_encoder"]["probe"]["top1"]))
PY
[ -s "$tmp/one/report/summary.txt" ] || fail "no report/summary.txt"
[ -s "$tmp/one/report/attention-00000001.png" ] || fail "no attention-map PNG"
grep -q "raw pixels" "$tmp/one/report/summary.txt" || fail "summary without baselines"
grep -q "class map of 200 test images" "$tmp/one/report/summary.txt" || fail "summary without the class map"

# ---- 2b. the same evaluation again: both baselines from the cache
"$ev" --checkpoint "$tmp/good.safetensors" --out "$tmp/two" --attention 0 --baseline-cache "$cache" "${small[@]}" \
    >"$tmp/two.log" 2>&1 || { cat "$tmp/two.log" >&2; fail "second --checkpoint failed"; }
for b in "raw pixels" "random encoder"; do
    grep -q "$b: baseline from the cache" "$tmp/two.log" || { cat "$tmp/two.log" >&2; fail "$b: cache not used"; }
done
grep -q "raw pixels: probe" "$tmp/two.log" && fail "the cached raw-pixel baseline was computed again"
"$py" - "$tmp/one/eval.jsonl" "$tmp/two/eval.jsonl" <<'PY' || fail "the cached baselines differ from the computed ones"
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1])["baselines"] for p in sys.argv[1:3])
for k in ("raw_pixels", "random_encoder"):
    x, y = dict(a[k]), dict(b[k])
    assert "cached" not in x, (k, "computed, yet marked cached")
    assert y.pop("cached") is True, k
    assert x == y, (k, x, y)
PY
echo "it_evaluator: cache: the second evaluation took both baselines from the cache, same numbers"

# ---- 2b, continued: other feature views: the raw pixels (read one way only) still from
# the cache, the random encoder computed again; every record names its views
"$ev" --checkpoint "$tmp/good.safetensors" --out "$tmp/views" --attention 0 --classmap 0 --baseline-cache "$cache" \
    --feature-views one "${small[@]}" >"$tmp/views.log" 2>&1 || { cat "$tmp/views.log" >&2; fail "--feature-views one failed"; }
grep -q "raw pixels: baseline from the cache" "$tmp/views.log" || { cat "$tmp/views.log" >&2; fail "views: raw pixels not from the cache"; }
grep -q "random encoder: baseline cached in" "$tmp/views.log" ||
    { cat "$tmp/views.log" >&2; fail "views: the random encoder of other views came from the cache"; }
"$py" - "$tmp/one/eval.jsonl" "$tmp/views/eval.jsonl" <<'PY' || fail "the records do not name their views"
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:3])
assert a["encoder"]["views"] == "flip" and a["baselines"]["random_encoder"]["views"] == "flip", a["encoder"]
assert b["encoder"]["views"] == "one" and b["baselines"]["random_encoder"]["views"] == "one", b["encoder"]
assert a["baselines"]["raw_pixels"]["probe"] == b["baselines"]["raw_pixels"]["probe"]
print("it_evaluator: views: probe %.3f reading each image and its mirror (the default), %.3f reading it alone" % (
    a["probe_top1"], b["probe_top1"]))
PY

# ---- 2c. a corrupt cache file: ignored with a log line, computed again, replaced
raw_file=$(ls "$cache"/raw_pixels-*.json)
head -c 100 "$raw_file" > "$tmp/cut" && mv "$tmp/cut" "$raw_file"
"$ev" --checkpoint "$tmp/good.safetensors" --out "$tmp/three" --attention 0 --baseline-cache "$cache" "${small[@]}" \
    >"$tmp/three.log" 2>&1 || { cat "$tmp/three.log" >&2; fail "--checkpoint with a corrupt cache file failed"; }
grep -q "raw pixels: ignoring the cached baseline $raw_file: unreadable" "$tmp/three.log" ||
    { cat "$tmp/three.log" >&2; fail "the corrupt cache file was not reported"; }
grep -q "raw pixels: baseline cached in $raw_file" "$tmp/three.log" || fail "the corrupt cache file was not replaced"
grep -q "random encoder: baseline from the cache" "$tmp/three.log" || fail "the good cache file was not used"
"$py" - "$tmp/one/eval.jsonl" "$tmp/three/eval.jsonl" <<'PY' || fail "the recomputed raw-pixel baseline differs"
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1])["baselines"] for p in sys.argv[1:3])
assert "cached" not in b["raw_pixels"] and b["random_encoder"]["cached"] is True
for key in ("probe", "label_fractions", "knn", "align", "uniform", "feat_dim"):
    assert a["raw_pixels"][key] == b["raw_pixels"][key], key
PY
"$py" -c 'import json, sys; json.load(open(sys.argv[1]))' "$raw_file" || fail "the replaced cache file is not JSON"
ls -A "$cache" | grep -q '\.tmp$' && fail "a temporary cache file was left behind"
echo "it_evaluator: cache: a corrupt file was ignored, the baseline computed again (same numbers) and the file replaced"

# ---- 2d. a server has the raw-pixel baseline before any checkpoint, and SIGTERM ends it
"$ev" --bind "$ep" --out "$tmp/out3" --attention 0 --baseline-cache "$cache" "${small[@]}" >"$tmp/server.log" 2>&1 &
pid=$!
wait_for "raw-pixel baseline ready (background" "$tmp/server.log" 60
grep -q "raw pixels: baseline from the cache" "$tmp/server.log" ||
    fail "the server did not take the raw-pixel baseline from the cache"
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the server did not exit within 10 s of SIGTERM"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with status $rc after SIGTERM"
echo "it_evaluator: server: raw-pixel baseline ready before any checkpoint, SIGTERM ends it"

# ---- 2e. a checkpoint arriving while the background thread decodes and computes: the same baselines
"$ev" --bind "$ep" --out "$tmp/out4" --attention 0 --baseline-cache none "${small[@]}" >"$tmp/server.log" 2>&1 &
pid=$!
wait_for "listening on" "$tmp/server.log" 30
send path 7 "$tmp/good.safetensors"
wait_for "good.safetensors" "$tmp/out4/eval.jsonl" 90
send stop
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with status $rc after STOP"
grep -q "raw-pixel baseline ready (background" "$tmp/server.log" || fail "no background raw-pixel baseline"
"$py" - "$tmp/one/eval.jsonl" "$tmp/out4/eval.jsonl" <<'PY' || fail "the server's baselines differ from --checkpoint's"
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1])["baselines"] for p in sys.argv[1:3])
for k in ("raw_pixels", "random_encoder"):
    x, y = dict(a[k]), dict(b[k])
    for r in (x, y):
        r.pop("seconds")
    assert x == y, (k, x, y)
PY
echo "it_evaluator: server: a checkpoint during the background work gets the same baselines"

# ---- 2f. --compare: stage maps of a SimCLR and a RotNet checkpoint side by side
"$tool" init --net resnet-mini --width 2 --head rotation --input 1x28x28 --train-steps 1 --seed 4 \
    --out "$tmp/rot.safetensors" >/dev/null
"$ev" --compare "$tmp/good.safetensors" "$tmp/rot.safetensors" --out "$tmp/cmp" --max-test 200 \
    >"$tmp/cmp.log" 2>&1 || { cat "$tmp/cmp.log" >&2; fail "--compare failed"; }
"$py" - "$tmp/cmp/compare.png" <<'PY' || fail "compare.png is missing or of an unlikely size"
import struct, sys
head = open(sys.argv[1], "rb").read(24)
assert head[:8] == b"\x89PNG\r\n\x1a\n", head
w, h = struct.unpack(">II", head[16:24])
# two panels of 4 columns of 128-pixel tiles, 8 rows plus titles
assert 2 * 4 * 128 <= w <= 2 * 4 * 128 + 200 and 8 * 128 <= h <= 8 * 128 + 200, (w, h)
print("it_evaluator: --compare: %dx%d PNG" % (w, h))
PY
grep -q "(a) .*simclr step 1; (b) .*rotation step 1; 8 test images" "$tmp/cmp.log" || fail "--compare did not log both methods"
rc=0
"$ev" --compare "$tmp/good.safetensors" --out "$tmp/cmp" >"$tmp/cmp1.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--compare with one checkpoint: status $rc, expected 2"

# ---- 3. a corrupt file on the command line
rc=0
"$ev" --checkpoint "$tmp/flipped.safetensors" --out "$tmp/bad" --baseline-cache none "${small[@]}" >"$tmp/bad.log" 2>&1 ||
    rc=$?
[ "$rc" -eq 1 ] || fail "--checkpoint on a corrupt file: status $rc, expected 1"
grep -q "checksum mismatch" "$tmp/bad.log" || fail "--checkpoint on a corrupt file does not say why"
[ -e "$tmp/bad/eval.jsonl" ] && fail "a corrupt checkpoint wrote a result"
echo "it_evaluator: all checks passed"
