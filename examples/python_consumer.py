#!/usr/bin/env python3
"""Takes the trainer's place: receives ViewBatches from the augmenters and
turns them into numpy arrays, the way another trainer (a PyTorch one on a GPU
machine, say) is fed from this augmentation farm.

    python3 examples/python_consumer.py --bind tcp://*:5556 --control tcp://*:5558 \
        --images 1000 [--summary out.json]

Needs Debian's python3-zmq, python3-msgpack and python3-numpy. It binds the
PULL socket the augmenters push to and the Control PUB they (and the loader)
listen to; after --images images it publishes STOP so that they exit.
"""
import argparse
import json
import sys
import time

import msgpack
import numpy as np
import zmq

FORMAT, VERSION = "sslpipe", 1
MAX_MESSAGE_BYTES = 256 << 20


def batches(pull, timeout_s):
    """Yields (views, labels, targets, indices, epochs) per ViewBatch:
    views (N, K, C, H, W) float32 or uint8; the others (N,) or (N, K) ints."""
    dropped = 0
    while True:
        if not pull.poll(int(timeout_s * 1000)):
            return
        try:
            m = msgpack.unpackb(pull.recv(), raw=False)
            if m.get("fmt") != FORMAT or m.get("ver") != VERSION:
                raise ValueError("not a version-1 sslpipe message")
        except Exception as e:  # a malformed message is dropped and counted
            dropped += 1
            print(f"python_consumer: dropped a message ({e}); {dropped} so far", file=sys.stderr)
            continue
        if m["type"] == "control":
            if m["kind"] == "end_of_stream":
                return
            continue
        if m["type"] != "viewbatch":
            continue
        k, c, h, w = m["views"], m["channels"], m["height"], m["width"]
        dtype = "<f4" if m["dtype"] == "f32" else "u1"
        views = np.stack([np.frombuffer(s["data"], dtype=dtype).reshape(k, c, h, w)
                          for s in m["samples"]])
        yield (views,
               np.array([s["label"] for s in m["samples"]]),
               np.array([s["targets"] for s in m["samples"]]),
               np.array([s["index"] for s in m["samples"]]),
               np.array([s["epoch"] for s in m["samples"]]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bind", default="tcp://127.0.0.1:5556", help="PULL endpoint for ViewBatches")
    ap.add_argument("--control", default="tcp://127.0.0.1:5558", help="PUB endpoint for Control")
    ap.add_argument("--images", type=int, default=1000, help="images to receive before STOP")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up")
    ap.add_argument("--summary", help="write a JSON summary of what arrived here")
    args = ap.parse_args()

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    pull.bind(args.bind)
    pub = ctx.socket(zmq.PUB)
    pub.bind(args.control)

    seen, shapes, labels, lo, hi = set(), set(), set(), np.inf, -np.inf
    images, start = 0, time.time()
    for views, y, targets, index, epoch in batches(pull, args.timeout):
        # A real trainer would do: x = torch.from_numpy(views) ... here: check.
        images += len(views)
        seen.update(zip(epoch.tolist(), index.tolist()))
        shapes.add((str(views.dtype),) + views.shape[1:])
        labels.update(y.tolist())
        lo, hi = min(lo, float(views.min())), max(hi, float(views.max()))
        if images >= args.images:
            break
    elapsed = time.time() - start

    # Control messages travel as two frames, [topic, body]: the stages
    # subscribe to the topic (b"stop"), so the body's field order is free.
    stop = {"fmt": FORMAT, "ver": VERSION, "type": "control", "kind": "stop",
            "sender": "python_consumer@localhost:0", "epoch": 0, "count": images}
    for _ in range(5):  # PUB drops messages to subscribers still connecting
        pub.send_multipart([b"stop", msgpack.packb(stop)])
        time.sleep(0.1)
    summary = {"images": images, "distinct": len(seen), "shapes": sorted(map(list, shapes)),
               "labels": sorted(labels), "min": lo, "max": hi,
               "images_per_s": images / elapsed if elapsed > 0 else 0.0}
    print(json.dumps(summary))
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f)
    pull.close(linger=0)
    pub.close(linger=1000)
    ctx.term()
    return 0 if images >= args.images else 1


if __name__ == "__main__":
    sys.exit(main())
