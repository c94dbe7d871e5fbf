#!/usr/bin/env bash
# The report page (evaluator/html.h) in a real browser: a tiny run.sh (1,024
# Fashion-MNIST images, width 4, two checkpoints, small evaluation subsets)
# writes <run>/report/index.html; Debian's chromium, headless, opens it from
# the file and tests/report_check.py reads the DOM it dumps:
#  1. every <img> decoded (the page's script marks naturalWidth 0), no script
#     error and no console message, each image an embedded PNG equal to its
#     file, nothing that would be fetched; the tables hold eval.jsonl's
#     numbers (per checkpoint, the newest against the baselines, the class
#     map), the loss chart one point per step of metrics.jsonl, the settings
#     run.json's values, fine-tuning "not run" (or its table when the records
#     have one); the attention maps, the class map and run.sh's augmentation
#     preview are on the page;
#  2. another evaluation (evaluator --checkpoint into the same run folder)
#     rewrites the page: one row more, no temporary file left;
#  3. a "finetune" list added to the newest record, and markup in its strings,
#     render as a table and as text (build/tools/report_page re-renders);
#  4. the check fails when an image is broken (a PNG with a damaged header),
#     so that a page with a broken image cannot pass.
. "$(dirname "$0")/lib.sh"

require_built "$BUILD/bin/loader" "$BUILD/bin/augmenter" "$BUILD/bin/trainer" "$BUILD/bin/evaluator" \
    "$BUILD/tools/report_page"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }
command -v chromium >/dev/null || { echo "FAIL: no chromium (make deps installs Debian's chromium)"; exit 1; }

CHECK="$PY $root/tests/report_check.py"

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

# browse PAGE NAME: the DOM chromium builds from PAGE (scripts run) in
# $tmp/NAME.dom, its log (console messages) in $tmp/NAME.log
browse() {
    timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/chromium" \
        --enable-logging=stderr --v=0 --virtual-time-budget=10000 --dump-dom "file://$1" \
        >"$tmp/$2.dom" 2>"$tmp/$2.log" || { echo "chromium failed on $1:"; tail -n 5 "$tmp/$2.log"; return 1; }
}

# ---- 1. a tiny run
run=$tmp/run
evaluator_opts="--max-train 500 --max-test 200 --classmap 200 --align-items 64 --label-fraction 0.1,1"
evaluator_opts+=" --probe-iters 200 --baseline-cache none"
base=$(port_base) || { echo "FAIL: no four free ports"; exit 1; }
rc=0
BUILD="$BUILD" timeout 300 "$root/run.sh" --no-build --width 4 --batch 128 --epochs 1 --out "$run" --port-base "$base" \
    --loader-opts "--limit 1024" --trainer-opts "--ckpt-every 4" --evaluator-opts "$evaluator_opts" \
    >"$tmp/run.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] && ok "run.sh exited 0" || { fail "run.sh exit $rc"; tail -n 20 "$tmp/run.log"; exit 1; }
page=$run/report/index.html
[ -s "$page" ] && ok "the evaluator wrote report/index.html ($(stat -c %s "$page") bytes)" || { fail "no $page"; exit 1; }
[ -s "$run/augment-preview.png" ] && ok "run.sh wrote augment-preview.png" || fail "no augment-preview.png"
[ "$(wc -l <"$run/eval.jsonl")" -eq 2 ] && ok "two evaluations in eval.jsonl" || fail "eval.jsonl: $(wc -l <"$run/eval.jsonl") lines"

browse "$page" first || exit 1
$CHECK "$tmp/first.dom" "$tmp/first.log" "$run" --images 3 && ok "the page checks out in chromium" ||
    fail "the page in chromium (above)"
grep -q 'id="img-attention"' "$tmp/first.dom" && grep -q 'id="img-classmap"' "$tmp/first.dom" &&
    grep -q 'id="img-augment"' "$tmp/first.dom" && ok "attention maps, class map and augmentation preview shown" ||
    fail "an image is missing from the page"

# ---- 2. another evaluation rewrites the page
# shellcheck disable=SC2086
"$BUILD/bin/evaluator" --checkpoint "$run/ckpt-00000004.safetensors" --out "$run" $evaluator_opts \
    >"$tmp/eval.log" 2>&1 || { fail "evaluator --checkpoint failed"; tail -n 5 "$tmp/eval.log"; }
browse "$page" second || exit 1
$CHECK "$tmp/second.dom" "$tmp/second.log" "$run" --images 3 >"$tmp/second.check" &&
    [ "$(grep -c '<tr data-step=' "$tmp/second.dom")" -eq 3 ] && ok "a third evaluation: the page rewritten, 3 rows" ||
    { fail "the page after a third evaluation"; cat "$tmp/second.check"; }
leftover=$(find "$run/report" -name '.index.html.tmp*' | wc -l)
[ "$leftover" -eq 0 ] && ok "no temporary page left" || fail "$leftover temporary page(s) left in $run/report"

# ---- 3. fine-tuning table, and strings with markup
ft=$tmp/ft
mkdir -p "$ft"
cp "$run/metrics.jsonl" "$run/run.json" "$ft/"
"$PY" - "$run/eval.jsonl" "$ft/eval.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last = max(range(len(recs)), key=lambda i: (recs[i]["step"], i))
recs[last]["finetune"] = [
    {"subset": 0.01, "labels": 600, "scratch_top1": 0.5125, "probe_top1": 0.7213, "finetune_top1": 0.7731,
     "epochs": 30, "lr": 0.05, "weight_decay": 0.0005, "seconds": 41.26},
    {"subset": "<b>10%</b> & \"all\" 'x'", "labels": 6000, "scratch_top1": 0.8302, "probe_top1": 0.80125,
     "finetune_top1": 0.85675, "epochs": 30, "lr": 0.05, "weight_decay": 0.0005, "seconds": 402.5},
]
recs[last]["method"] = "simclr<script>window.bad=1</script>"
recs[last]["train_data"] = "/data/<img src=x onerror=alert(1)>&amp;"
with open(sys.argv[2], "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
PY
"$BUILD/tools/report_page" "$ft" || fail "report_page $ft failed"
browse "$ft/report/index.html" ft || exit 1
$CHECK "$tmp/ft.dom" "$tmp/ft.log" "$ft" --images 2 && ok "the fine-tuning table holds the records' numbers" ||
    fail "the fine-tuning page (above)"
grep -q 'simclr&lt;script&gt;window.bad=1&lt;/script&gt;' "$tmp/ft.dom" &&
    grep -q '/data/&lt;img src=x onerror=alert(1)&gt;&amp;amp;' "$tmp/ft.dom" &&
    ok "strings from eval.jsonl are text, not markup" || fail "a string from eval.jsonl was not escaped"

# ---- 4. a broken image fails the check
bad=$tmp/bad
mkdir -p "$bad"
cp "$run/metrics.jsonl" "$bad/"
# the newest record's class map, with its first 16 bytes (signature, IHDR) overwritten
"$PY" - "$run/eval.jsonl" "$bad" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last = max(range(len(recs)), key=lambda i: (recs[i]["step"], i))
data = bytearray(open(recs[last]["classmap_png"], "rb").read())
data[:16] = b"not a png header"
open(sys.argv[2] + "/broken.png", "wb").write(data)
recs[last]["classmap_png"] = sys.argv[2] + "/broken.png"
with open(sys.argv[2] + "/eval.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
PY
"$BUILD/tools/report_page" "$bad" || fail "report_page $bad failed"
browse "$bad/report/index.html" bad || exit 1
if $CHECK "$tmp/bad.dom" "$tmp/bad.log" "$bad" >"$tmp/bad.check"; then
    fail "a page with a broken image passed the check"
else
    grep -q "did not decode" "$tmp/bad.check" && ok "a broken image fails the check: $(head -1 "$tmp/bad.check")" ||
        { fail "the broken image failed for another reason"; cat "$tmp/bad.check"; }
fi

if [ "$failures" -ne 0 ]; then
    echo "it_report: $failures failure(s)"
    exit 1
fi
echo "it_report: all passed"
