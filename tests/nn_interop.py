#!/usr/bin/env python3
"""Interop check: a checkpoint written by the C library, loaded into the
equivalent PyTorch model (built from the description stored in the file),
gives the same features and outputs for the same images.

usage: nn_interop.py CKPT EMBEDDINGS   (both written by nntool)
Exits non-zero on any mismatch.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_torch_model as M  # noqa: E402

RTOL = 1e-4


def rel(a, b):
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-30))


def main():
    ckpt, emb = sys.argv[1], sys.argv[2]
    tensors, meta = M.read_safetensors(ckpt)
    assert meta.get("format") == "pt", "metadata format must be pt"
    net = M.Net(meta["nn_desc"])
    state = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith("optimizer.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        print("FAIL state_dict: missing %s unexpected %s" % (missing, unexpected))
        return 1
    net.eval()
    got, _ = M.read_safetensors(emb)
    with torch.no_grad():
        x = torch.from_numpy(got["input"])
        feats = net.features(x).numpy()
        out = net(x).numpy()
    bad = 0
    for name, mine, theirs in (("features", got["features"], feats), ("output", got["output"], out)):
        r = rel(mine, theirs)
        ok = r <= RTOL
        bad += not ok
        print("%s %s: relative error %.2e (limit %.0e), shape %s" % ("ok  " if ok else "FAIL", name, r, RTOL,
                                                                   tuple(mine.shape)))
    print("%d passed, %d failed" % (2 - bad, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
