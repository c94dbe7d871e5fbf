#!/usr/bin/env bash
# Training rate with the augmentation on other "hosts": network namespaces
# joined by veth pairs on a bridge (tests/netns_lib.sh), CURVE on every
# socket. The loader and the trainer run in one namespace; two augmenter
# processes (one worker each) run either both in a second namespace or one in
# each of two. SimCLR on Fashion-MNIST, width 8, batch 64, NETNS_STEPS steps
# (default 150). Prints one JSON line per case: images/s after the first
# quarter of the steps, and the two-namespace case against the one-namespace
# case measured in the same run. Needs root or user namespaces; prints a
# "skipped" line otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
. "$here/tests/netns_lib.sh"
if ! netns_available; then
    netns_reexec_unshared "$here/bench/netns_bench.sh" "$@"
    echo '{"bench":"netns","skipped":"cannot create network namespaces (not root, no user namespaces)"}'
    exit 0
fi
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$here/$BUILD" ;; esac
FMNIST=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
STEPS=${NETNS_STEPS:-150}
NETNS_TMP=$(mktemp -d)
trap 'netns_cleanup; rm -rf "$NETNS_TMP"' EXIT
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "netns_bench: $FMNIST is missing" >&2; exit 1; }
netns_setup || { echo "netns_bench: cannot set up the namespaces" >&2; exit 1; }

run() {
    local name=$1; shift
    if ! netns_pipeline "$name" "$STEPS" "$@"; then
        echo "netns_bench: the $name run failed:" >&2
        tail -n 5 "$NETNS_TMP/$name".*.err >&2
        exit 1
    fi
}
run one "$NS_B" "$NS_B"
one=$netns_rate
echo "{\"bench\":\"netns\",\"case\":\"augmenters_in_one_namespace\",\"augmenters\":2,\"namespaces\":1,\"curve\":true,\"steps\":$STEPS,\"images_per_s\":$one,\"samples_per_augmenter\":[${netns_aug_samples[0]},${netns_aug_samples[1]}]}"
run two "$NS_B" "$NS_C"
two=$netns_rate
ratio=$("$PY" -c "print(round($two / $one, 3))")
echo "{\"bench\":\"netns\",\"case\":\"augmenters_in_two_namespaces\",\"augmenters\":2,\"namespaces\":2,\"curve\":true,\"steps\":$STEPS,\"images_per_s\":$two,\"samples_per_augmenter\":[${netns_aug_samples[0]},${netns_aug_samples[1]}],\"against_one_namespace\":$ratio}"
