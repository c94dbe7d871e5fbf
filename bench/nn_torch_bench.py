#!/usr/bin/env python3
"""The reference for bench/nn_bench.c: the same SimCLR training step in
PyTorch (Debian python3-torch), same network (built from the same
description text), batch, loss and SGD update, on 2 threads.
Prints one JSON line per width.

usage: nn_torch_bench.py [--width 16,32] [--images 256] [--steps 3] [--threads 2]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import nn_torch_model as M  # noqa: E402


def run(width, images, steps):
    net = M.Net(M.preset_desc("resnet-mini", width, "simclr", 3, 32, 32))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(2 * images, 3, 32, 32) - 0.5
    net.train()
    times = []
    for s in range(steps + 1):          # the first step warms up
        t0 = time.perf_counter()
        loss = M.ntxent(net(x), 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    print(json.dumps({"bench": "nn_simclr_step", "impl": "torch", "torch": torch.__version__,
                      "net": "resnet-mini", "width": width, "images": images, "views": 2 * images,
                      "threads": torch.get_num_threads(), "steps": steps,
                      "step_s": round(mean, 4), "best_step_s": round(min(times), 4),
                      "images_per_s": round(images / mean, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "loss": round(loss.item(), 4)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", default="16,32")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for w in a.width.split(","):
        run(int(w), a.images, a.steps)


if __name__ == "__main__":
    main()
