#!/usr/bin/env bash
# Integration test of the Control topic frame (proto/PROTOCOL.md, "Topics"):
# a STOP written by another MessagePack writer, with its fields in another
# order, stops every stage that listens to the trainer's Control socket.
# A Python PUB (python3-zmq, python3-msgpack) plays the trainer and publishes
# [b"stop", body] where body is a dict packed by msgpack in the order fmt, ver,
# type, count, sender, epoch, kind: not the bytes proto_control_encode writes,
# so the deprecated single-frame prefix match could not see it. The real
# loader, augmenter (two workers) and evaluator run on free loopback ports;
# each must log the stop and exit 0.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
EVAL="$BUILD/bin/evaluator"
WAIT_UP_S=60       # bound on the wait for the evaluator to listen
WAIT_STOP_S=30     # bound on the wait for each stage to exit after the STOPs start

require_built "$LOADER" "$AUG" "$EVAL"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps installs dataset-fashion-mnist)"; exit 1; }
"$PY" -c 'import zmq, msgpack' 2>/dev/null || { echo "FAIL: $PY cannot import zmq and msgpack (make deps)"; exit 1; }

lp=$(free_port); tp=$(free_port); cp=$(free_port); ep=$(free_port)
control="tcp://127.0.0.1:$cp"

timeout 120 "$LOADER" --data "$FMNIST" --limit 2000 --epochs 0 --bind "tcp://127.0.0.1:$lp" \
    --control "$control" --quiet >"$tmp/loader.out" 2>"$tmp/loader.err" &
loader_pid=$!
# nobody takes the augmenter's ViewBatches: it waits at its high-water mark, as under a busy trainer
timeout 120 "$AUG" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" --control "$control" \
    --workers 2 --batch 32 --size 28 --channels 1 >"$tmp/aug.out" 2>"$tmp/aug.err" &
aug_pid=$!
timeout 120 "$EVAL" --bind "tcp://127.0.0.1:$ep" --control "$control" --out "$tmp/eval" --no-baselines \
    --attention 0 --max-train 400 --max-test 200 >"$tmp/eval.out" 2>"$tmp/eval.err" &
eval_pid=$!
pids+=("$loader_pid" "$aug_pid" "$eval_pid")

for _ in $(seq $((WAIT_UP_S * 10))); do grep -q "listening on" "$tmp/eval.err" && break; sleep 0.1; done
grep -q "listening on" "$tmp/eval.err" || { fail "the evaluator did not start listening"; tail -n 5 "$tmp/eval.err"; exit 1; }

# The foreign trainer: STOP as [topic, body] every 0.2 s until it is killed
# (PUB drops what is published before a subscription arrives).
"$PY" - "$control" >"$tmp/py.out" 2>"$tmp/py.err" <<'PY' &
import sys, time, zmq, msgpack
pub = zmq.Context().socket(zmq.PUB)
pub.bind(sys.argv[1])
stop = {"fmt": "sslpipe", "ver": 1, "type": "control",
        "count": 0, "sender": "pytrainer@test:1", "epoch": 0, "kind": "stop"}
body = msgpack.packb(stop)
assert not body[1:].startswith(b"\xa3fmt\xa7sslpipe\xa3ver\x01\xa4type\xa7control\xa4kind"), "not a foreign order"
print(body.hex(), flush=True)
while True:
    pub.send_multipart([b"stop", body])
    time.sleep(0.2)
PY
py_pid=$!
pids+=("$py_pid")

for name in loader aug eval; do
    pid_var="${name}_pid"
    pid=${!pid_var}
    if gone "$pid" "$WAIT_STOP_S"; then
        wait "$pid"
        rc=$?
        [ "$rc" -eq 0 ] && ok "the $name stopped on the foreign STOP (exit 0)" ||
            { fail "the $name exited with status $rc"; tail -n 5 "$tmp/$name.err"; }
    else
        fail "the $name is still running $WAIT_STOP_S s after the foreign STOPs began"
        tail -n 5 "$tmp/$name.err"
    fi
done
grep -qF "stop received from pytrainer@test:1" "$tmp/loader.err" && ok "the loader logged the stop" ||
    { fail "no 'stop received from pytrainer@test:1' in the loader's log"; tail -n 5 "$tmp/loader.err"; }
# the first worker to hear it tells the parent, which stops the other one
grep -qF "stop from pytrainer@test:1" "$tmp/aug.err" && ok "the augmenter logged the stop" ||
    { fail "no 'stop from pytrainer@test:1' in the augmenter's log"; tail -n 5 "$tmp/aug.err"; }
grep -qF "STOP from pytrainer@test:1" "$tmp/eval.err" && ok "the evaluator logged the stop" ||
    { fail "no 'STOP from pytrainer@test:1' in the evaluator's log"; tail -n 5 "$tmp/eval.err"; }

echo "it_stop_foreign: $failures failure(s)"
[ "$failures" -eq 0 ]
