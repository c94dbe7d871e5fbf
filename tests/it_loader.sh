#!/usr/bin/env bash
# Integration test of the loader: runs the real executable on loopback with
# tests/loader_consumer pulling and checking counts, labels, pixels (against
# libvips' own decode), epoch markers and end of stream. Covers a labeled
# folder of JPEG and PNG images the test writes (tests/make_images), Fashion-MNIST (Debian
# package dataset-fashion-mnist), a folder of corrupt files, shuffling by seed,
# Control STOP, SIGTERM, and exit status 2 for a missing/empty dataset and bad
# options.
set -u
. "$(dirname "$0")/lib.sh"
LOADER="$BUILD/bin/loader"
CONSUMER="$BUILD/tools/loader_consumer"

require_built "$LOADER" "$CONSUMER"

# run_pair NAME "LOADER ARGS" "CONSUMER ARGS": runs both on a fresh port;
# sets rc_loader, rc_consumer; logs in $tmp/NAME.loader / NAME.consumer.
run_pair() {
    local name=$1 largs=$2 cargs=$3 port
    port=$(free_port)
    # shellcheck disable=SC2086
    "$LOADER" $largs --bind "tcp://127.0.0.1:$port" --quiet >"$tmp/$name.loader" 2>&1 &
    local lp=$!
    pids+=("$lp")
    # shellcheck disable=SC2086
    timeout 60 "$CONSUMER" --connect "tcp://127.0.0.1:$port" $cargs >"$tmp/$name.consumer" 2>&1
    rc_consumer=$?
    wait "$lp"
    rc_loader=$?
}

check_pair() {
    local name=$1
    if [ "$rc_loader" -eq 0 ] && [ "$rc_consumer" -eq 0 ]; then
        ok "$name: $(cat "$tmp/$name.consumer")"
    else
        fail "$name: loader exit $rc_loader, consumer exit $rc_consumer"
        sed 's/^/    loader: /' "$tmp/$name.loader" | tail -n 15
        sed 's/^/    consumer: /' "$tmp/$name.consumer" | tail -n 15
    fi
}

# summary_has NAME TEXT: the loader's exit summary contains TEXT.
summary_has() {
    if grep -q -- "$2" "$tmp/$1.loader"; then ok "$1: summary has \"$2\""
    else fail "$1: summary lacks \"$2\""; tail -n 5 "$tmp/$1.loader" | sed 's/^/    /'; fi
}

# ---- a labeled folder of 32x32 JPEG and PNG files (tests/make_images):
# 250 per class, 2,500 images; a sub-folder of 200 per class (2,000), 2 epochs
IMAGES="$tmp/images"
image_folder "$IMAGES" --classes 10 --per-class 250 --size 32
sub="$tmp/images-sub"
for d in "$IMAGES"/*/; do
    c=$(basename "$d")
    mkdir -p "$sub/$c"
    ls "$d" | sort | head -n 200 | sed "s|^|$d|" | xargs ln -s -t "$sub/$c"
done
run_pair images-sub "--data $sub --epochs 2 --control none --seed 3" "--folder $sub --expect 2000 --epochs 2"
check_pair images-sub
summary_has images-sub "sent 4000 images"
summary_has images-sub "skipped 0 "

# --limit on the whole folder (the first 2,000 files), a cache too small for all of it
run_pair images-limit "--data $IMAGES --limit 2000 --epochs 2 --cache-mb 1 --control none" \
    "--folder $IMAGES --expect 2000 --epochs 2"
check_pair images-limit

# shards split the items: 2000 / 3 -> 667 + 667 + 666
run_pair images-shard "--data $sub --shard 2/3 --control none" "--folder $sub --expect 666 --epochs 1 --no-pixels"
check_pair images-shard

# same seed, same order; another seed, another order
run_pair seed-a "--data $sub --seed 7 --control none" "--folder $sub --no-pixels --order-out $tmp/order-a"
run_pair seed-b "--data $sub --seed 7 --control none" "--folder $sub --no-pixels --order-out $tmp/order-b"
run_pair seed-c "--data $sub --seed 8 --control none" "--folder $sub --no-pixels --order-out $tmp/order-c"
if [ -s "$tmp/order-a" ] && cmp -s "$tmp/order-a" "$tmp/order-b"; then ok "same seed, same order"
else fail "same seed gave different orders"; fi
if ! cmp -s "$tmp/order-a" "$tmp/order-c"; then ok "another seed, another order"
else fail "seeds 7 and 8 gave the same order"; fi
if ! sort -n "$tmp/order-a" | cmp -s - "$tmp/order-a"; then ok "order is shuffled"
else fail "epoch came in index order"; fi

# ---- Fashion-MNIST (IDX, gzip): all 60,000, 2 epochs (the second from the cache)
if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
    run_pair fmnist "--data $FMNIST --epochs 2 --control none" \
        "--idx $FMNIST/train-images-idx3-ubyte.gz --expect 60000 --epochs 2"
    check_pair fmnist
    summary_has fmnist "sent 120000 images"
    # --hold-out leaves out the evaluator's test part: 10% of each class
    run_pair holdout "--data $FMNIST --hold-out 0.1 --control none" \
        "--idx $FMNIST/train-images-idx3-ubyte.gz --expect 54000 --epochs 1"
    check_pair holdout
    summary_has holdout "sent 54000 images"
else
    fail "Fashion-MNIST missing in $FMNIST (make deps installs dataset-fashion-mnist)"
fi

# ---- a folder with corrupt files among good ones
bad="$tmp/bad"
mkdir -p "$bad"
"$PY" - "$bad" <<'EOF'
import struct, sys, zlib
d = sys.argv[1]
def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))
def png(w, h, rows):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
rows = b"".join(b"\x00" + bytes((x * 7 + y * 3 + c) % 256 for x in range(64) for c in range(3)) for y in range(64))
good = png(64, 64, rows)
open(f"{d}/good.png", "wb").write(good)
open(f"{d}/cut.png", "wb").write(good[: len(good) // 2])
open(f"{d}/bomb.png", "wb").write(png(30000, 30000, b"\x00\x00\x00\x00"))
open(f"{d}/zero.jpg", "wb").close()
open(f"{d}/notes.jpg", "w").write("this is text, not a JPEG\n")
EOF
for f in 0000 0001 0002 0004; do cp "$IMAGES/class03/$f.jpg" "$bad/class03-$f.jpg"; done
head -c 400 "$IMAGES/class03/0005.jpg" >"$bad/cut.jpg"
good_count=5; corrupt=4
ln -s "$bad/missing-target.jpg" "$bad/dangling.jpg"
run_pair corrupt "--data $bad --epochs 2 --control none" "--folder $bad --expect $good_count --epochs 2"
check_pair corrupt
summary_has corrupt "sent $((good_count * 2)) images"
summary_has corrupt "skipped $((corrupt + 2)) (unreadable 1, corrupt $corrupt, too_large 1)"
n_warn=$(grep -c "warning: skipped" "$tmp/corrupt.loader")
if [ "$n_warn" -eq $((corrupt + 2)) ]; then ok "corrupt: one warning per bad file ($n_warn over 2 epochs)"
else fail "corrupt: $n_warn warning lines, expected $((corrupt + 2))"; fi

# ---- Control STOP from the trainer's PUB stops an endless run
port=$(free_port)
cport=$(free_port)
"$LOADER" --data "$FMNIST" --epochs 0 --bind "tcp://127.0.0.1:$port" --control "tcp://127.0.0.1:$cport" \
    --quiet >"$tmp/stop.loader" 2>&1 &
lp=$!
pids+=("$lp")
timeout 30 "$CONSUMER" --connect "tcp://127.0.0.1:$port" --idx "$FMNIST/train-images-idx3-ubyte.gz" \
    --no-pixels --control-bind "tcp://127.0.0.1:$cport" --stop-after 70000 >"$tmp/stop.consumer" 2>&1
rc_consumer=$?
timeout 10 tail --pid="$lp" -f /dev/null
if kill -0 "$lp" 2>/dev/null; then fail "stop: loader still running after STOP"; kill "$lp"; fi
wait "$lp"
rc_loader=$?
check_pair stop
summary_has stop "stop received from loader_consumer"
summary_has stop "stopped: sent"

# ---- SIGTERM stops a loader blocked on a consumer that never comes
port=$(free_port)
"$LOADER" --data "$FMNIST" --bind "tcp://127.0.0.1:$port" --control none >"$tmp/term.loader" 2>&1 &
lp=$!
for _ in $(seq 100); do grep -q "items" "$tmp/term.loader" && break; sleep 0.1; done
kill -TERM "$lp"
timeout 10 tail --pid="$lp" -f /dev/null
wait "$lp"
rc=$?
if [ "$rc" -eq 0 ] && grep -q "stopped: sent 0 images" "$tmp/term.loader"; then ok "SIGTERM: clean stop"
else fail "SIGTERM: exit $rc"; cat "$tmp/term.loader"; fi

# ---- exit status 2 with a HINT: missing dataset, empty folder, bad options
mkdir -p "$tmp/empty"
expect_2() {
    local what=$1; shift
    "$LOADER" "$@" --control none --bind "tcp://127.0.0.1:$(free_port)" >"$tmp/e2.out" 2>&1
    local rc=$?
    if [ "$rc" -eq 2 ] && grep -q "HINT" "$tmp/e2.out"; then ok "exit 2: $what"
    else fail "$what: exit $rc (expected 2 with a HINT)"; cat "$tmp/e2.out"; fi
}
expect_2 "missing dataset" --data "$tmp/no-such-folder"
expect_2 "empty folder" --data "$tmp/empty"
expect_2 "no --data"
expect_2 "--channels 2" --data "$bad" --channels 2
expect_2 "--shard 3/2" --data "$bad" --shard 3/2
expect_2 "--format jpeg" --data "$bad" --format jpeg
expect_2 "--epochs -1" --data "$bad" --epochs -1
mkdir -p "$tmp/bad-only" && cp "$bad/notes.jpg" "$bad/zero.jpg" "$tmp/bad-only/"
expect_2 "only unreadable files" --data "$tmp/bad-only"

if "$LOADER" --help | grep -q -- "--max-pixels"; then ok "--help documents the options"
else fail "--help"; fi

if [ "$failures" -ne 0 ]; then
    echo "it_loader: $failures failures"
    exit 1
fi
echo "it_loader: all passed"
