#!/usr/bin/python3
"""Reference for bench/torch_feed_bench.sh: the PyTorch trainer's step fed by
a torchvision DataLoader instead of the augmenters.

The same network, NT-Xent loss and SGD step as examples/torch_trainer, on two
views per image made by torchvision's SimCLR chain (bench/augment_torchvision.py,
the chain the augmenter bench compares with) in --workers DataLoader worker
processes, from the JPEG files (decoded by PIL in the workers, as a
torchvision user's ImageFolder-style dataset does). Prints one JSON line:
  {"bench": "torch_feed", "feed": "torchvision", "workers": 2, "views_per_s": ..., "data_wait": ...}
Timing starts once the first batch has arrived (as the trainer's own
images_per_s), and data_wait is the share of that time spent waiting for
batches. Run with Debian's Python (python3-torch, python3-torchvision).
"""
import argparse
import json
import os
import sys
import time

import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples", "torch_trainer"))
import augment_torchvision  # noqa: E402
import sslnet  # noqa: E402
import torch_trainer  # noqa: E402


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, paths, chain, max_side):
        self.paths, self.chain, self.max_side = paths, chain, max_side

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = Image.open(self.paths[i]).convert("RGB")
        if self.max_side and max(img.size) > self.max_side:   # as the loader's --max-side
            img.thumbnail((self.max_side, self.max_side), Image.BILINEAR)
        return torch.stack([self.chain(img), self.chain(img)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder of images (and/or class sub-folders)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    ap.add_argument("--size", type=int, default=224, help="side of the views")
    ap.add_argument("--max-side", type=int, default=256, help="shrink larger images first (0: no)")
    ap.add_argument("--batch", type=int, default=32, help="images per step")
    ap.add_argument("--steps", type=int, default=20, help="steps to time")
    ap.add_argument("--arch", default="conv4", help="network, as the trainer's --arch (a preset, a "
                                                    "description file, torchvision:NAME)")
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--limit", type=int, default=10000, help="images to read at most")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    paths = augment_torchvision.list_images(a.data, a.limit)
    if not paths:
        print("torch_feed_dataloader: no images in %s" % a.data, file=sys.stderr)
        return 1
    ds = TwoViews(paths, augment_torchvision.simclr_chain(a.size), a.max_side)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                     drop_last=True, persistent_workers=True, prefetch_factor=2)
    net = sslnet.build(a.arch, a.width, "simclr", (3, a.size, a.size))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    net.train()
    done, wait, start = 0, 0.0, None
    while done < a.steps:
        it = iter(dl)
        while done < a.steps:
            t0 = time.monotonic()
            try:
                v = next(it)                      # (B, 2, C, H, W)
            except StopIteration:
                break
            t1 = time.monotonic()
            if start is None:
                start = t1                        # the first batch: start-up, not timed
            else:
                wait += t1 - t0
            x = torch.cat([v[:, 0], v[:, 1]])     # rows 0..B-1 first views, B..2B-1 second views
            loss = torch_trainer.contrastive(net(x), 0.5, True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
    elapsed = time.monotonic() - start
    print(json.dumps({"bench": "torch_feed", "feed": "torchvision", "workers": a.workers, "size": a.size,
                      "arch": "%s width %d" % (os.path.basename(a.arch), a.width), "batch": a.batch, "steps": a.steps,
                      "images_per_s": round(a.steps * a.batch / elapsed, 2),
                      "views_per_s": round(2 * a.steps * a.batch / elapsed, 2),
                      "data_wait": round(wait / elapsed, 4), "torch_threads": a.threads}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
