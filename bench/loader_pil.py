#!/usr/bin/python3
"""Reference for the loader benchmark: Pillow decoding the same image files,
one process, one core (open + load into a numpy array, as a Python data
loader does). Prints one JSON line.

    loader_pil.py --data ../shared/data/cifar10-train [--limit N] [--name NAME]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image


def list_files(root):
    """Files in the loader's order: sorted class folders, sorted files."""
    classes = sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    if not classes:
        return sorted(os.path.join(root, f) for f in os.listdir(root) if not f.startswith("."))
    files = []
    for c in classes:
        d = os.path.join(root, c)
        files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if not f.startswith(".")]
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--name", default="dataset")
    args = ap.parse_args()
    files = list_files(args.data)
    if args.limit:
        files = files[: args.limit]
    if not files:
        sys.exit(f"loader_pil: no files in {args.data}")
    start = time.perf_counter()
    total = 0
    for path in files:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            a = np.asarray(im)
        total += a.size
    seconds = time.perf_counter() - start
    print(json.dumps({"bench": "pillow_decode", "dataset": args.name, "images": len(files),
                      "seconds": round(seconds, 4), "images_per_s": round(len(files) / seconds, 1),
                      "us_per_image": round(seconds / len(files) * 1e6, 2), "pillow": Image.__version__}))


if __name__ == "__main__":
    main()
