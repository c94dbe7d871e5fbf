#!/usr/bin/env bash
# Integration test of the augmenter: the real loader, then two augmenter
# processes (2 workers + 1 worker), then a test consumer (Python, pyzmq +
# msgpack) that binds the trainer's PULL and Control PUB. Checks that every
# sample of a small labeled folder of JPEG and PNG images (tests/make_images)
# arrives exactly once with two views (simclr)
# or four rotations with targets 0-3 (rotnet, uint8), that the views do not
# depend on which worker made them, that END_OF_STREAM carries the loader's
# count, that recipes with libvips steps work across forked workers too, that
# STOP, SIGTERM and end of stream end the processes with status 0,
# that malformed messages are dropped and counted, and that bad options exit 2.
set -u
. "$(dirname "$0")/lib.sh"
AUG="$BUILD/bin/augmenter"
LOADER="$BUILD/bin/loader"
N=600

require_built "$AUG" "$LOADER"
IMAGES="$tmp/images"
image_folder "$IMAGES" --classes 10 --per-class $((N / 10)) --size 32
"$PY" -c 'import zmq, msgpack' 2>/dev/null || { echo "FAIL: $PY lacks zmq/msgpack (make deps)"; exit 1; }

# The test consumer: binds PULL (views) and PUB (control); after END_OF_STREAM
# and its count of samples (or a timeout), publishes STOP for a second, then
# writes a JSON summary: per-index view hashes, targets, shapes, controls.
cat >"$tmp/consumer.py" <<'EOF'
import hashlib, json, sys, time
import msgpack, zmq
pull_ep, pub_ep, out, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.bind(pull_ep)
pub = ctx.socket(zmq.PUB); pub.bind(pub_ep)
seen, controls, bad, shapes, eos = {}, [], 0, set(), None
deadline = time.time() + timeout
while time.time() < deadline:
    if not pull.poll(200):
        if eos is not None and sum(len(v) for v in seen.values()) >= eos:
            break
        continue
    m = msgpack.unpackb(pull.recv(), raw=False)
    if m.get("fmt") != "sslpipe" or m.get("ver") != 1:
        bad += 1
    elif m["type"] == "viewbatch":
        K, C, H, W = m["views"], m["channels"], m["height"], m["width"]
        size = 4 if m["dtype"] == "f32" else 1
        shapes.add((m["dtype"], K, C, H, W))
        for s in m["samples"]:
            ok = len(s["data"]) == K * C * H * W * size and len(s["targets"]) == K
            bad += not ok
            seen.setdefault(str(s["index"]), []).append(
                {"label": s["label"], "targets": s["targets"],
                 "sha": hashlib.sha1(s["data"]).hexdigest()})
    elif m["type"] == "control":
        controls.append([m["kind"], m["count"]])
        if m["kind"] == "end_of_stream":
            eos = m["count"]
    else:
        bad += 1
stop = {"fmt": "sslpipe", "ver": 1, "type": "control", "kind": "stop",
        "sender": "it_augmenter@localhost:0", "epoch": 0, "count": 0}
for _ in range(10):
    pub.send(msgpack.packb(stop)); time.sleep(0.1)
json.dump({"seen": seen, "controls": controls, "bad": bad,
           "shapes": sorted(map(list, shapes))}, open(out, "w"))
EOF

# run_pipeline NAME "AUGMENTER ARGS": loader (N images, one epoch) ->
# augmenter --workers 2 and augmenter --workers 1 -> consumer. Sets rc_a1, rc_a2.
run_pipeline() {
    local name=$1 aargs=$2 lp cp pp
    lp=$(free_port); cp=$(free_port); pp=$(free_port)
    "$PY" "$tmp/consumer.py" "tcp://127.0.0.1:$cp" "tcp://127.0.0.1:$pp" "$tmp/$name.json" 60 \
        2>"$tmp/$name.consumer" &
    local c=$!
    pids+=("$c")
    local common="--connect tcp://127.0.0.1:$lp --push tcp://127.0.0.1:$cp --control tcp://127.0.0.1:$pp"
    # shellcheck disable=SC2086
    timeout 90 "$AUG" $common --workers 2 $aargs >"$tmp/$name.a1" 2>&1 &
    local a1=$!
    # shellcheck disable=SC2086
    timeout 90 "$AUG" $common --workers 1 $aargs >"$tmp/$name.a2" 2>&1 &
    local a2=$!
    pids+=("$a1" "$a2")
    sleep 1   # let every worker connect, so the loader spreads the samples
    timeout 60 "$LOADER" --data "$IMAGES" --limit "$N" --bind "tcp://127.0.0.1:$lp" --control none \
        --quiet >"$tmp/$name.loader" 2>&1
    wait "$c"
    wait "$a1"; rc_a1=$?
    wait "$a2"; rc_a2=$?
}

# check NAME PYTHON-EXPRESSION-ON-d: d is the consumer's JSON summary
check() {
    local name=$1 expr=$2 msg=$3
    if "$PY" -c "import json,sys; d=json.load(open('$tmp/$name.json')); sys.exit(0 if ($expr) else 1)"; then
        ok "$name: $msg"
    else
        fail "$name: $msg"
        "$PY" -c "import json; d=json.load(open('$tmp/$name.json')); print('  controls', d['controls'], 'bad', d['bad'], 'shapes', d['shapes'], 'samples', len(d['seen']), 'dups', sum(len(v)>1 for v in d['seen'].values()))"
    fi
}

run_pipeline simclr "--recipe simclr --size 32 --batch 16 --normalize cifar10 --quiet"
[ "$rc_a1" -eq 0 ] && [ "$rc_a2" -eq 0 ] && ok "simclr: both augmenters exited 0" ||
    { fail "simclr: augmenter status $rc_a1 / $rc_a2"; tail -n 5 "$tmp/simclr.a1" "$tmp/simclr.a2"; }
check simclr "len(d['seen']) == $N and all(len(v) == 1 for v in d['seen'].values())" \
    "every one of the $N samples exactly once"
check simclr "sorted(map(int, d['seen'])) == list(range($N))" "the indices are 0..$((N - 1))"
check simclr "d['shapes'] == [['f32', 2, 3, 32, 32]] and d['bad'] == 0" "two float32 3x32x32 views each"
check simclr "all(v[0]['targets'] == [-1, -1] and 0 <= v[0]['label'] < 10 for v in d['seen'].values())" \
    "labels 0-9, no targets"
check simclr "[c for c in d['controls'] if c[0] == 'end_of_stream'] == [['end_of_stream', $N]]" \
    "one END_OF_STREAM with count $N"
check simclr "['end_of_epoch', $N] in d['controls']" "END_OF_EPOCH forwarded"
grep -q "end of stream: " "$tmp/simclr.a1" "$tmp/simclr.a2" && ok "simclr: summary line printed" ||
    fail "simclr: no summary line"

# same seed, other worker layout: the same views for every sample
run_pipeline simclr2 "--recipe simclr --size 32 --batch 7 --normalize cifar10 --quiet"
"$PY" - "$tmp/simclr.json" "$tmp/simclr2.json" <<'EOF' && ok "simclr: views identical across runs and workers" || fail "simclr: views differ between runs"
import json, sys
a, b = (json.load(open(p))["seen"] for p in sys.argv[1:3])
sys.exit(0 if a.keys() == b.keys() and all(a[k][0]["sha"] == b[k][0]["sha"] for k in a) else 1)
EOF

run_pipeline rotnet "--recipe rotnet --dtype u8 --size 32 --batch 32 --quiet"
[ "$rc_a1" -eq 0 ] && [ "$rc_a2" -eq 0 ] && ok "rotnet: both augmenters exited 0" ||
    fail "rotnet: augmenter status $rc_a1 / $rc_a2"
check rotnet "len(d['seen']) == $N and all(len(v) == 1 for v in d['seen'].values())" \
    "every sample exactly once"
check rotnet "d['shapes'] == [['u8', 4, 3, 32, 32]]" "four uint8 views each"
check rotnet "all(v[0]['targets'] == [0, 1, 2, 3] for v in d['seen'].values())" "targets 0, 1, 2, 3"

# libvips steps (vips:NAME, jpeg): the parent parses the recipe with libvips,
# then forks its workers, which run the steps; every sample arrives, and
# another worker layout gives the same views
VIPS_RECIPE="views=2,crop:scale=0.3-1,flip:p=0.5,vips:sharpen:sigma=0.5-2:p=0.5,vips:rotate:angle=-15-15:p=0.5,jpeg:q=30-90:p=0.3"
run_pipeline vips "--recipe $VIPS_RECIPE --dtype u8 --size 32 --batch 16 --quiet"
[ "$rc_a1" -eq 0 ] && [ "$rc_a2" -eq 0 ] && ok "vips: both augmenters exited 0" ||
    { fail "vips: augmenter status $rc_a1 / $rc_a2"; tail -n 5 "$tmp/vips.a1" "$tmp/vips.a2"; }
check vips "len(d['seen']) == $N and all(len(v) == 1 for v in d['seen'].values()) and d['bad'] == 0" \
    "every sample exactly once"
check vips "d['shapes'] == [['u8', 2, 3, 32, 32]]" "two uint8 3x32x32 views each"
run_pipeline vips2 "--recipe $VIPS_RECIPE --dtype u8 --size 32 --batch 5 --quiet"
"$PY" - "$tmp/vips.json" "$tmp/vips2.json" <<'EOF' && ok "vips: views identical across runs and workers" || fail "vips: views differ between runs"
import json, sys
a, b = (json.load(open(p))["seen"] for p in sys.argv[1:3])
sys.exit(0 if a.keys() == b.keys() and all(a[k][0]["sha"] == b[k][0]["sha"] for k in a) else 1)
EOF

# malformed input: garbage, a Sample with a wrong pixel count, a Stats
# message, then one good Sample and END_OF_STREAM, from a Python PUSH
lp=$(free_port); cp=$(free_port)
"$PY" "$tmp/consumer.py" "tcp://127.0.0.1:$cp" "tcp://127.0.0.1:$(free_port)" "$tmp/bad.json" 20 \
    2>"$tmp/bad.consumer" &
c=$!
pids+=("$c")
timeout 30 "$AUG" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$cp" --control none \
    --size 16 >"$tmp/bad.a" 2>&1 &
a=$!
pids+=("$a")
"$PY" - "tcp://127.0.0.1:$lp" <<'EOF'
import sys, time, msgpack, zmq
s = zmq.Context().socket(zmq.PUSH); s.bind(sys.argv[1]); time.sleep(1)
h = {"fmt": "sslpipe", "ver": 1}
def sample(i, n):
    return msgpack.packb(dict(h, type="sample", index=i, epoch=0, label=3, height=8, width=8,
                              channels=3, pixels=bytes(n)))
s.send(b"\x00\x01garbage")
s.send(sample(1, 10))
s.send(msgpack.packb(dict(h, type="stats", sender="x@y:1", time=0.0, stats=[])))
s.send(sample(2, 8 * 8 * 3))
s.send(msgpack.packb(dict(h, type="control", kind="end_of_stream", sender="x@y:1", epoch=0, count=1)))
time.sleep(0.5)
EOF
wait "$c"; wait "$a"; rc=$?
[ "$rc" -eq 0 ] && ok "malformed: augmenter exited 0 at end of stream" || fail "malformed: status $rc"
grep -q "3 malformed messages dropped" "$tmp/bad.a" && ok "malformed: 3 dropped and counted" ||
    { fail "malformed: count not reported"; cat "$tmp/bad.a"; }
check bad "list(d['seen']) == ['2'] and d['seen']['2'][0]['label'] == 3" "the good sample still went through"

# SIGTERM with nothing to do: exits promptly with status 0, workers included
"$AUG" --connect "tcp://127.0.0.1:$(free_port)" --push "tcp://127.0.0.1:$(free_port)" --control none \
    --workers 2 >"$tmp/term.a" 2>&1 &
a=$!
pids+=("$a")
sleep 0.5
kill -TERM "$a"
t0=$(date +%s%N)
wait "$a"; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" -eq 0 ] && [ "$ms" -lt 3000 ] && ok "SIGTERM: exit 0 in ${ms} ms" || fail "SIGTERM: status $rc after ${ms} ms"
grep -q "stopped" "$tmp/term.a" && ok "SIGTERM: summary says stopped" || fail "SIGTERM: no summary"

# bad usage: exit status 2 and a message that names the problem
usage_case() {
    local expect=$1; shift
    "$AUG" "$@" >"$tmp/usage.out" 2>&1
    local rc=$?
    if [ "$rc" -eq 2 ] && grep -q -- "$expect" "$tmp/usage.out"; then ok "usage: $* -> 2"; else
        fail "usage: $* -> $rc: $(head -2 "$tmp/usage.out")"; fi
}
usage_case "unknown operation 'blurr'" --recipe crop,blurr
usage_case "unknown libvips operation 'sharpn'" --recipe crop,vips:sharpn
usage_case "missing required argument angle" --recipe crop,vips:rotate
usage_case "--channels wants 1 or 3" --channels 2
usage_case "cannot be normalised" --dtype u8 --normalize imagenet
usage_case "--workers wants a whole number from 1" --workers 0
usage_case "needs -o" --preview x.png
"$AUG" --help | grep -q -- "--recipe" && ok "--help documents --recipe" || fail "--help"

# preview grid of a test image (fontconfig keeps its caches to the end of the
# process, which LeakSanitizer would report in a sanitizer build)
img=$(find "$IMAGES" -name '*.jpg' | sort | head -1)
png_size() {   # width x height from the PNG header, or nothing
    "$PY" -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24)
if d[:8] == b"\x89PNG\r\n\x1a\n": print("%dx%d" % struct.unpack(">II", d[16:24]))' "$1"
}
if ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$AUG" --preview "$img" -o "$tmp/grid.png" --quiet &&
    [ -n "$(png_size "$tmp/grid.png")" ]; then ok "preview: a $(png_size "$tmp/grid.png") PNG"; else
    fail "preview"; fi

echo "it_augmenter: $failures failure(s)"
[ "$failures" -eq 0 ]
