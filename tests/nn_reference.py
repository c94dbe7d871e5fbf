#!/usr/bin/env python3
"""Writes tests/data/nn/reference.safetensors: a small mini-ResNet with fixed
random weights, its inputs, and what PyTorch (in float64) computes for it:
features and projections in evaluation and training mode, the NT-Xent loss,
the rotation loss, the gradient of every parameter for both, and the BN
running statistics after the training step. tests/test_nn_reference.c
compares every tensor with the C library.

Run by developers when the network code changes (not by CI):
    /usr/bin/python3 tests/nn_reference.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_torch_model as M  # noqa: E402

WIDTH, IMAGES, SIDE, TAU = 2, 4, 16, 0.5
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "nn", "reference.safetensors")


def randomize(net, rng):
    """Non-trivial values everywhere (BN gamma/beta and statistics included)."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                v = rng.uniform(0.5, 1.5, t.shape)
            elif name.endswith("running_mean"):
                v = rng.normal(0, 0.2, t.shape)
            elif name.endswith("weight") and t.dim() == 1:   # BN gamma
                v = rng.uniform(0.5, 1.5, t.shape)
            elif t.dim() > 1:
                fan_in = int(np.prod(t.shape[1:]))
                v = rng.normal(0, (2.0 / fan_in) ** 0.5, t.shape)
            else:
                v = rng.normal(0, 0.1, t.shape)
            t.copy_(torch.from_numpy(v.astype(np.float32)))


def grads(net):
    return {n: p.grad.detach().clone() for n, p in net.named_parameters()}


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(1234)
    desc_s = M.preset_desc("resnet-mini", WIDTH, "simclr", 3, SIDE, SIDE)
    desc_r = M.preset_desc("resnet-mini", WIDTH, "rotation", 3, SIDE, SIDE)
    sim = M.Net(desc_s)
    randomize(sim, rng)
    rot = M.Net(desc_r)
    randomize(rot, rng)
    # the rotation net shares the encoder of the SimCLR net
    rot.encoder.load_state_dict(sim.encoder.state_dict())
    init_s = {k: v.clone() for k, v in M.net_state(sim).items()}
    init_r = {k: v.clone() for k, v in M.net_state(rot).items()}

    x = torch.from_numpy(rng.normal(0, 1, (2 * IMAGES, 3, SIDE, SIDE)).astype(np.float32))
    labels = torch.arange(2 * IMAGES) % 4
    sim.double(); rot.double()
    xd = x.double()

    out = {"input": x, "rot_labels": labels.float()}
    for k, v in init_s.items():
        out["param." + k] = v
    for k, v in init_r.items():
        if k.startswith("head."):
            out["rot_param." + k] = v

    sim.eval()
    with torch.no_grad():
        out["eval.features"] = sim.features(xd)
        out["eval.proj"] = sim(xd)

    sim.train()
    f = sim.features(xd)
    z = sim.head(f)
    loss = M.ntxent(z, TAU)
    loss.backward()
    out["train.features"] = f.detach()
    out["train.proj"] = z.detach()
    out["train.ntxent"] = loss.detach().reshape(1)
    for k, g in grads(sim).items():
        out["grad." + k] = g
    for k, v in M.net_state(sim).items():
        if "running_" in k:
            out["after." + k] = v

    rot.train()
    logits = rot(xd)
    rloss = torch.nn.functional.cross_entropy(logits, labels)
    rloss.backward()
    out["rot.logits"] = logits.detach()
    out["rot.loss"] = rloss.detach().reshape(1)
    for k, g in grads(rot).items():
        out["rot_grad." + k] = g

    arrays = {k: v.detach().double().numpy().astype(np.float32) for k, v in out.items()}
    meta = {"desc_simclr": desc_s, "desc_rotation": desc_r, "tau": repr(TAU),
            "generator": "tests/nn_reference.py, torch %s, float64" % torch.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    M.write_safetensors(OUT, arrays, meta)
    print("wrote %s: %d tensors, %d bytes, ntxent %.6f, rotation loss %.6f"
          % (OUT, len(arrays), os.path.getsize(OUT), loss.item(), rloss.item()))


if __name__ == "__main__":
    main()
