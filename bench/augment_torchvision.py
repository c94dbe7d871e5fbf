#!/usr/bin/python3
"""Reference timing: torchvision's SimCLR augmentation chain on one core.

The same cases as build/bin/augment_bench (CIFAR-10 at 32, the ImageNet sample
at 224 and 96), with the images decoded once before timing, as the augmenter
receives decoded pixels. Prints one JSON line per case, e.g.
  {"bench": "augment", "impl": "torchvision", "dataset": "cifar10", "size": 32,
   "recipe": "simclr", "views": 4000, "us_per_view": 450.1}
Run with Debian's Python (/usr/bin/python3, python3-torchvision 0.14).
"""
import argparse
import json
import os
import sys
import time

import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

SMALL_SIDE = 64            # SimCLR: no blur and crop scale 0.2-1 at 64 px or less
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SEED = 1234


def simclr_chain(size):
    """SimCLR's default augmentation, as torchvision users write it."""
    small = size <= SMALL_SIDE
    steps = [
        T.RandomResizedCrop(size, scale=(0.2 if small else 0.08, 1.0)),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
    ]
    if not small:
        k = int(0.1 * size)
        k += 1 - k % 2                     # odd kernel, 10% of the side
        steps.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    steps += [T.ToTensor(), T.Normalize(MEAN, STD)]
    return T.Compose(steps)


def list_images(folder, limit):
    """Up to `limit` image paths: the folder's own files, then its sub-folders in turns."""
    exts = (".jpg", ".jpeg", ".png")
    top = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(exts))
    subs = sorted(os.path.join(folder, d) for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)))
    per_sub = [sorted(os.path.join(s, f) for f in os.listdir(s) if f.lower().endswith(exts))
               for s in subs]
    paths = top[:limit]
    i = 0
    while len(paths) < limit and any(i < len(p) for p in per_sub):
        for p in per_sub:
            if i < len(p) and len(paths) < limit:
                paths.append(p[i])
        i += 1
    return paths


def decode(paths):
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    for im in images:
        im.load()
    return images


def time_chain(images, dataset, size, seconds, views_per_image=2):
    chain = simclr_chain(size)
    for im in images[:16]:                 # warm-up, untimed
        chain(im)
    views = 0
    start = time.perf_counter()
    while True:
        for im in images:
            for _ in range(views_per_image):
                chain(im)
                views += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    print(json.dumps({"bench": "augment", "impl": "torchvision", "dataset": dataset,
                      "size": size, "recipe": "simclr", "views": views,
                      "us_per_view": elapsed * 1e6 / views,
                      "torchvision": torchvision.__version__}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar", default="../shared/data/cifar10-train")
    ap.add_argument("--imagenet", default="../shared/data/imagenet-sample")
    ap.add_argument("--n-cifar", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    for folder in (args.cifar, args.imagenet):
        if not os.path.isdir(folder):
            sys.exit(f"augment_torchvision: no folder {folder} (HINT: --cifar / --imagenet DIR)")
    small = decode(list_images(args.cifar, args.n_cifar))
    large = decode(list_images(args.imagenet, 1000))
    time_chain(small, "cifar10", 32, args.seconds)
    time_chain(large, "imagenet-sample", 224, args.seconds)
    time_chain(large, "imagenet-sample", 96, args.seconds)


if __name__ == "__main__":
    main()
