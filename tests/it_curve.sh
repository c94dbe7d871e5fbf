#!/usr/bin/env bash
# Integration test of CURVE (--curve DIR, transport/curve.c, keygen), on
# loopback with free ports:
#  1. keygen: a new folder (modes 700/600), --client NAME, refusals (exit 2).
#  2. loader + augmenter (its own client key from keygen --client) + trainer,
#     all with --curve, train SimCLR on Fashion-MNIST to the last step. Meanwhile:
#     - Python clients (python3-zmq) with no key and with an unknown key get
#       nothing from the loader's PUSH nor the trainer's Control PUB, and what
#       they push to the trainer is never received; the loader and the trainer
#       log the refused key (a bounded number of lines);
#     - a Python client whose key was added with keygen --client while the
#       pipeline runs is accepted (it receives the trainer's Control messages);
#     - an augmenter without --curve gets no Sample and says why, once per socket.
#     The pipeline trains to the end and the STOP ends the loader and the augmenter.
#  3. --curve with a missing folder, or a client folder for a binding stage:
#     exit 2 with the reason.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
KEYGEN="$BUILD/bin/keygen"
STEPS=300

require_built "$LOADER" "$AUG" "$TRAINER" "$KEYGEN"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps installs dataset-fashion-mnist)"; exit 1; }
"$PY" -c 'import zmq, msgpack; assert zmq.has("curve")' 2>/dev/null ||
    { echo "FAIL: $PY lacks zmq with CURVE, or msgpack (make deps)"; exit 1; }

# ---- 1. keygen ----
keys="$tmp/keys"
"$KEYGEN" "$keys" >"$tmp/kg.out" 2>&1 && ok "keygen DIR exits 0" || { fail "keygen DIR"; cat "$tmp/kg.out"; }
"$KEYGEN" --client aug "$keys" >"$tmp/kg.out" 2>&1 && ok "keygen --client aug exits 0" || { fail "keygen --client"; cat "$tmp/kg.out"; }
modes=$(cd "$keys" && stat -c '%a %n' . server.secret client.secret allowed clients/aug clients/aug/client.secret | tr '\n' ' ')
[ "$modes" = "700 . 600 server.secret 600 client.secret 700 allowed 700 clients/aug 600 clients/aug/client.secret " ] &&
    ok "secrets 600, folders 700" || fail "modes: $modes"
ls "$keys/clients/aug" | tr '\n' ' ' | grep -qx "client.public client.secret server.public " &&
    ok "clients/aug holds server.public and its own pair, no server secret" || fail "clients/aug: $(ls "$keys/clients/aug")"
cmp -s "$keys/allowed/aug.public" "$keys/clients/aug/client.public" && ok "allowed/aug.public is its public key" ||
    fail "allowed/aug.public"
kg_usage() {
    "$KEYGEN" "$@" >"$tmp/kg.out" 2>&1
    local rc=$?
    [ "$rc" -eq 2 ] && ok "keygen $* -> exit 2" || { fail "keygen $* -> exit $rc, want 2"; cat "$tmp/kg.out"; }
}
kg_usage "$keys"                          # holds keys already
kg_usage --client aug "$keys"             # exists already
kg_usage --client "../evil" "$keys"
kg_usage --client x "$tmp/not-a-key-folder"
kg_usage
"$KEYGEN" --help >"$tmp/kg.out" 2>&1 && grep -q "allowed/" "$tmp/kg.out" && ok "keygen --help exits 0" || fail "keygen --help"

# ---- 2. a CURVE pipeline, and clients that must be refused ----
lp=$(free_port); tp=$(free_port); cp=$(free_port)
timeout 120 "$LOADER" --data "$FMNIST" --limit 20000 --epochs 0 --bind "tcp://127.0.0.1:$lp" \
    --control "tcp://127.0.0.1:$cp" --curve "$keys" --quiet >"$tmp/loader.out" 2>"$tmp/loader.err" &
loader_pid=$!
timeout 120 "$AUG" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
    --workers 1 --batch 32 --size 28 --channels 1 --curve "$keys/clients/aug" --quiet \
    >"$tmp/aug.out" 2>"$tmp/aug.err" &
aug_pid=$!
pids+=("$loader_pid" "$aug_pid")
timeout 120 "$TRAINER" --method simclr --width 8 --batch 32 --steps "$STEPS" --bind "tcp://127.0.0.1:$tp" \
    --control "tcp://127.0.0.1:$cp" --evaluator none --curve "$keys" --out "$tmp/run" --quiet \
    >"$tmp/t.out" 2>"$tmp/t.err" &
t_pid=$!
pids+=("$t_pid")
for _ in $(seq 300); do [ -s "$tmp/run/metrics.jsonl" ] && break; sleep 0.1; done
[ -s "$tmp/run/metrics.jsonl" ] && ok "the CURVE pipeline trains" || { fail "no training step in 30 s"; tail -n 5 "$tmp"/*.err; }

# an augmenter without --curve: refused, says why
timeout 60 "$AUG" --connect "tcp://127.0.0.1:$lp" --push "tcp://127.0.0.1:$tp" --control "tcp://127.0.0.1:$cp" \
    --workers 1 --batch 32 --size 28 --channels 1 >"$tmp/plain.out" 2>"$tmp/plain.err" &
plain_pid=$!
pids+=("$plain_pid")

# the Python clients; prints one JSON line
"$KEYGEN" --client late "$keys" >/dev/null   # added while the pipeline runs
cat >"$tmp/clients.py" <<'EOF'
import json, sys, time
import zmq
lp, tp, cp, keys = sys.argv[1:5]
server = open(f"{keys}/server.public").read().strip().encode()
ctx = zmq.Context()
unknown_pub, unknown_sec = zmq.curve_keypair()

def sock(kind, endpoint, key=None):
    s = ctx.socket(kind)
    s.linger = 0
    if key:
        s.curve_serverkey = server
        s.curve_publickey, s.curve_secretkey = key
    if kind == zmq.SUB:
        s.subscribe(b"")
    s.connect(endpoint)
    return s

late = (open(f"{keys}/clients/late/client.public").read().strip().encode(),
        open(f"{keys}/clients/late/client.secret").read().strip().encode())
socks = {
    "nokey_samples": sock(zmq.PULL, f"tcp://127.0.0.1:{lp}"),
    "unknown_samples": sock(zmq.PULL, f"tcp://127.0.0.1:{lp}", (unknown_pub, unknown_sec)),
    "nokey_control": sock(zmq.SUB, f"tcp://127.0.0.1:{cp}"),
    "unknown_control": sock(zmq.SUB, f"tcp://127.0.0.1:{cp}", (unknown_pub, unknown_sec)),
    "late_control": sock(zmq.SUB, f"tcp://127.0.0.1:{cp}", late),
}
pushers = [sock(zmq.PUSH, f"tcp://127.0.0.1:{tp}"), sock(zmq.PUSH, f"tcp://127.0.0.1:{tp}", (unknown_pub, unknown_sec))]
got = {k: 0 for k in socks}
queued = 0
deadline = time.time() + 4
poller = zmq.Poller()
for s in socks.values():
    poller.register(s, zmq.POLLIN)
while time.time() < deadline:
    for p in pushers:
        try:
            p.send(b"\x00junk from an unauthenticated client", zmq.NOBLOCK)
            queued += 1
        except zmq.Again:
            pass
    for s, _ in poller.poll(100):
        name = next(k for k, v in socks.items() if v is s)
        s.recv()
        got[name] += 1
got["unknown_key"] = unknown_pub.decode()
print(json.dumps(got))
EOF
"$PY" "$tmp/clients.py" "$lp" "$tp" "$cp" "$keys" >"$tmp/clients.json" 2>"$tmp/clients.err" ||
    { fail "the Python clients failed"; cat "$tmp/clients.err"; }
kill -0 "$t_pid" 2>/dev/null && ok "the trainer was still training while the clients tried" ||
    echo "   (note: the trainer finished before the clients were done)"
"$PY" - "$tmp/clients.json" <<'EOF' && ok "clients with no key or an unknown key got nothing; the key added while running was accepted" || { fail "clients: $(cat "$tmp/clients.json")"; }
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("nokey_samples", "unknown_samples", "nokey_control", "unknown_control"):
    assert d[k] == 0, (k, d)
assert d["late_control"] > 0, d
EOF
unknown_key=$("$PY" -c "import json; print(json.load(open('$tmp/clients.json'))['unknown_key'])" 2>/dev/null)
grep -qF "refused a connection from 127.0.0.1: its client key $unknown_key is not in" "$tmp/loader.err" &&
    grep -qF "refused a connection from 127.0.0.1: its client key $unknown_key is not in" "$tmp/t.err" &&
    ok "the loader and the trainer log the refused key" || { fail "no refusal logged"; cat "$tmp/loader.err" "$tmp/t.err"; }
grep -qF "accepted client key 'late'" "$tmp/t.err" && ok "the trainer logs the newly added key 'late'" ||
    { fail "no 'accepted client key 'late''"; cat "$tmp/t.err"; }

kill -TERM "$plain_pid" 2>/dev/null
wait "$plain_pid" 2>/dev/null
grep -q "0 samples" "$tmp/plain.err" && ok "the augmenter without --curve got no Sample" ||
    { fail "the augmenter without --curve"; cat "$tmp/plain.err"; }
n=$(grep -c "cannot connect to tcp://127.0.0.1:$lp (loader)" "$tmp/plain.err")
[ "$n" -eq 1 ] && ok "and says why, once: $(grep -m1 "cannot connect to tcp://127.0.0.1:$lp" "$tmp/plain.err" | cut -c1-140)..." ||
    { fail "the augmenter without --curve logged $n lines for the loader socket"; cat "$tmp/plain.err"; }

wait "$t_pid"
rc=$?
if [ "$rc" -eq 0 ] && "$PY" -c "
import json, math, sys
d = json.loads(open('$tmp/t.out').read().strip().splitlines()[-1])
sys.exit(0 if d['end'] == 'done' and d['step'] == $STEPS and d['dropped'] == 0 and math.isfinite(d['loss']) else 1)"; then
    ok "the CURVE pipeline trained to step $STEPS, nothing from the refused clients received"
else
    fail "trainer exit $rc: $(tail -c 300 "$tmp/t.out")"
    tail -n 5 "$tmp/t.err"
fi
for p in "$loader_pid" "$aug_pid"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
wait "$loader_pid"; rl=$?
wait "$aug_pid"; ra=$?
[ "$rl" -eq 0 ] && [ "$ra" -eq 0 ] && ok "STOP ended the loader and the augmenter (exit 0)" ||
    fail "loader exit $rl, augmenter exit $ra"
refusals=$(cat "$tmp/loader.err" "$tmp/t.err" | grep -c "refused\|failed its handshake")
[ "$refusals" -le 24 ] && ok "refusals logged in $refusals lines (bounded)" ||
    { fail "$refusals refusal lines"; cat "$tmp/loader.err"; }

# ---- 3. bad --curve ----
bad() {
    local want=$1; shift
    "$@" >"$tmp/u.out" 2>"$tmp/u.err"
    local rc=$?
    [ "$rc" -eq "$want" ] && ok "$(basename "$1") ${*:2} -> exit $want ($(head -n1 "$tmp/u.err" | cut -c1-90))" ||
        { fail "$* -> exit $rc, want $want"; cat "$tmp/u.err"; }
}
bad 2 "$AUG" --curve "$tmp/no-such-folder"
bad 2 "$LOADER" --data "$FMNIST" --curve "$keys/clients/aug"
bad 2 "$TRAINER" --curve "$keys/clients/aug" --out "$tmp/u"
mkdir -p "$tmp/half" && cp "$keys/server.public" "$tmp/half/"
bad 2 "$AUG" --curve "$tmp/half"

echo "it_curve: $failures failure(s)"
[ "$failures" -eq 0 ]
