#!/usr/bin/env bash
# run.sh end to end, as a user runs it (with --no-build and a small slice of
# Fashion-MNIST to stay short): every stage starts, one epoch is trained
# exactly once, the evaluator reports on the final checkpoint (and fine-tunes
# it, with a smaller subset than run.sh's default, given through
# --evaluator-opts), and nothing is left running. Then `--resume latest`
# continues the same run for a second epoch from its checkpoint.
. "$(dirname "$0")/lib.sh"

require_built "$BUILD/bin/loader" "$BUILD/bin/augmenter" "$BUILD/bin/trainer" "$BUILD/bin/evaluator" \
    "$BUILD/bin/nntool"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

N=4096
# four consecutive free ports: loader, trainer, evaluator, control
port_base() {
    local base p
    for _ in $(seq 1 50); do
        base=$((20000 + RANDOM % 40000))
        for p in 0 1 2 3; do
            "$PY" -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $base + $p))" 2>/dev/null ||
                continue 2
        done
        echo "$base"
        return 0
    done
    return 1
}

# run NAME ARGS...: ./run.sh with the small settings; output in $tmp/NAME.log
run() {
    local name=$1; shift
    local base
    base=$(port_base) || { fail "$name: no four free ports"; return 1; }
    BUILD="$BUILD" timeout 300 "$root/run.sh" --no-build --width 8 --out "$tmp/run" --port-base "$base" \
        --loader-opts "--limit $N" --evaluator-opts "--max-train 2000 --max-test 1000 --label-fraction 1 --finetune-per-class 2" \
        "$@" >"$tmp/$name.log" 2>&1
}

run first --epochs 1 --batch 256
rc=$?
[ "$rc" -eq 0 ] && ok "run.sh exited 0" || { fail "run.sh exit $rc"; tail -n 20 "$tmp/first.log"; }
grep -q "probe@1" "$tmp/run/report/summary.txt" 2>/dev/null &&
    ok "the evaluator wrote report/summary.txt" || fail "no report/summary.txt"
grep -q "step 16" "$tmp/run/report/summary.txt" 2>/dev/null &&
    ok "the summary describes the final checkpoint (step 16)" || fail "summary: $(head -2 "$tmp/run/report/summary.txt")"
grep -q '"record":"epoch","epoch":0,"distinct":'"$N"',.*"complete":true' "$tmp/run/metrics.jsonl" &&
    ok "epoch 0: $N distinct samples trained (exactly once)" ||
    { fail "no complete record for epoch 0"; grep '"record"' "$tmp/run/metrics.jsonl"; }
"$PY" - "$tmp/run/eval.jsonl" <<'EOF' && ok "the final checkpoint fine-tuned, on the subset given through --evaluator-opts" ||
import json, sys
last = [json.loads(line) for line in open(sys.argv[1])][-1]
assert last["step"] == 16, last["step"]
(e,) = last["finetune"]
assert e["subset"] == "2/class" and e["labels"] == 20, e
EOF
    fail "no fine-tuning in the final record: $(tail -c 600 "$tmp/run/eval.jsonl")"
for stage in loader augmenter trainer evaluator; do
    grep -q "^\[$stage\]" "$tmp/first.log" || fail "no output from the $stage"
done

run resumed --epochs 2 --resume latest
rc=$?
[ "$rc" -eq 0 ] && ok "run.sh --resume latest exited 0" || { fail "resume: exit $rc"; tail -n 20 "$tmp/resumed.log"; }
grep -q -- "--start-epoch 1" "$tmp/resumed.log" &&
    ok "the loader continued at epoch 1" || fail "the loader did not start at epoch 1"
grep -q '"step":32' "$tmp/run/metrics.jsonl" && ! grep -q '"step":33' "$tmp/run/metrics.jsonl" &&
    ok "training went on from step 16 to step 32" || fail "steps after the resume: $(tail -n 1 "$tmp/run/metrics.jsonl")"
grep -q "step 32" "$tmp/run/report/summary.txt" 2>/dev/null &&
    ok "the summary describes step 32" || fail "summary after the resume"

sleep 1
left=$(pgrep -f -- "--out $tmp/run|$tmp/run" | wc -l)
[ "$left" -eq 0 ] && ok "no process left" || { fail "$left process(es) left"; pgrep -af -- "$tmp/run"; }

if [ "$failures" -ne 0 ]; then
    echo "it_run: $failures failure(s)"
    exit 1
fi
echo "it_run: all passed"
