#!/usr/bin/env bash
# Integration test across network namespaces (tests/netns_lib.sh): three
# namespaces joined by veth pairs on a bridge stand for three hosts. The
# loader and the trainer bind on 10.77.0.1 in the first; augmenters in the
# others connect to it, CURVE on every socket, each namespace with its own
# client key. Two runs of SimCLR on Fashion-MNIST, trained to the end:
#  1. both augmenters in one namespace, 2. one in each of the other two.
# Checks that each run ends at its last step, that every augmenter did part of
# the work, that the trainer accepted each namespace's key from that
# namespace's address, and that nothing is left behind (processes,
# namespaces). Prints the training rate of both runs (bench/netns_bench.sh
# measures it properly).
# Needs root (or user namespaces: it then runs itself inside `unshare --user
# --map-root-user --net --mount`); when no namespace can be made at all (a
# missing privilege) it prints SKIP and exits 77, which the runner reports as
# skipped.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/netns_lib.sh"
if ! netns_available; then
    netns_reexec_unshared "$0" "$@"
    echo "SKIP: cannot create network namespaces here (not root, and no user namespaces)"
    exit 77
fi
. "$here/lib.sh"
NETNS_TMP=$tmp
STEPS=60
trap 'netns_cleanup; cleanup' EXIT

require_built "$BUILD/bin/loader" "$BUILD/bin/augmenter" "$BUILD/bin/trainer" "$BUILD/bin/keygen"
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps installs dataset-fashion-mnist)"; exit 1; }

[ -n "${SSLP_NETNS_UNSHARED:-}" ] && echo "   (not root: running inside unshare --user --map-root-user --net --mount)"
if netns_setup; then
    ok "namespaces $NS_A (10.77.0.1), $NS_B (10.77.0.2), $NS_C (10.77.0.3) joined by a bridge"
else
    fail "cannot set up the namespaces and veth links"
    exit 1
fi

# check_run NAME: the trainer's summary, the augmenters' shares
check_run() {
    local name=$1 rc=$2
    if [ "$rc" -eq 0 ] && "$PY" -c "
import json, sys
d = json.loads(open('$tmp/$name.trainer.out').read().strip().splitlines()[-1])
sys.exit(0 if d['end'] == 'done' and d['step'] == $STEPS else 1)" 2>/dev/null; then
        ok "$name: trained to step $STEPS ($netns_rate images/s)"
    else
        fail "$name: trainer exit $rc: $(tail -c 300 "$tmp/$name.trainer.out" 2>/dev/null)"
        tail -n 5 "$tmp/$name".*.err
    fi
    local s all=1
    for s in "${netns_aug_samples[@]}"; do [ -n "$s" ] && [ "$s" -gt 0 ] || all=0; done
    [ "$all" -eq 1 ] && ok "$name: every augmenter did part of the work (samples: ${netns_aug_samples[*]})" ||
        { fail "$name: augmenter samples: ${netns_aug_samples[*]}"; tail -n 3 "$tmp/$name".aug*.err; }
}

netns_pipeline one "$STEPS" "$NS_B" "$NS_B"
check_run one $?
one_rate=$netns_rate
grep -qF "accepted client key 'b' from 10.77.0.2" "$tmp/one.trainer.err" &&
    ok "one: the trainer accepted key 'b' from 10.77.0.2" || { fail "one: key 'b'"; cat "$tmp/one.trainer.err"; }

netns_pipeline two "$STEPS" "$NS_B" "$NS_C"
check_run two $?
two_rate=$netns_rate
grep -qF "accepted client key 'b' from 10.77.0.2" "$tmp/two.trainer.err" &&
    grep -qF "accepted client key 'c' from 10.77.0.3" "$tmp/two.trainer.err" &&
    ok "two: the trainer accepted key 'b' from 10.77.0.2 and key 'c' from 10.77.0.3" ||
    { fail "two: keys"; cat "$tmp/two.trainer.err"; }
grep -qF "accepted client key 'c' from 10.77.0.3" "$tmp/two.loader.err" &&
    ok "two: so did the loader" || { fail "two: the loader did not accept 'c'"; cat "$tmp/two.loader.err"; }
echo "   training rate: augmenters in one namespace $one_rate images/s, spread over two $two_rate images/s"

left=0
for ns in "$NS_A" "$NS_B" "$NS_C"; do left=$((left + $(ip netns pids "$ns" 2>/dev/null | wc -l))); done
[ "$left" -eq 0 ] && ok "no process left in the namespaces" || fail "$left process(es) left in the namespaces"
netns_cleanup
ip netns list 2>/dev/null | grep -q "$NETNS_PREFIX" && fail "namespaces left: $(ip netns list | grep "$NETNS_PREFIX")" ||
    ok "namespaces deleted"

echo "it_netns: $failures failure(s)"
[ "$failures" -eq 0 ]
