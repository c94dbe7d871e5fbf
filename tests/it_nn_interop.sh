#!/usr/bin/env bash
# Interop: checkpoints written by the C library load into the equivalent
# PyTorch model and give the same embeddings. Needs Debian's python3-torch
# and python3-numpy (installed by `make deps`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
tool="$BUILD/bin/nntool"
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
    echo "it_nn_interop: $py cannot import torch and numpy; install python3-torch python3-numpy (make deps)" >&2
    exit 1
fi
[ -x "$tool" ] || { echo "it_nn_interop: $tool not built (make $tool)" >&2; exit 1; }

check() {   # name, nntool init options...
    local name=$1; shift
    "$tool" init "$@" --out "$tmp/$name.safetensors"
    "$tool" info "$tmp/$name.safetensors"
    "$tool" embed "$tmp/$name.safetensors" --images 6 --out "$tmp/$name.emb.safetensors"
    echo "== $name"
    "$py" "$here/nn_interop.py" "$tmp/$name.safetensors" "$tmp/$name.emb.safetensors"
}

check resnet-simclr --net resnet-mini --width 4 --head simclr --train-steps 3
check resnet-rotation --net resnet-mini --width 4 --head rotation --input 3x24x24
check conv4-gray --net conv4 --width 4 --head none --input 1x28x28 --train-steps 0
echo "it_nn_interop: all checkpoints match PyTorch"
