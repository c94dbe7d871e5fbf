#!/usr/bin/python3
"""Augmenter throughput with 1 and 2 worker processes, and worker memory over time.

Runs the real pipeline on loopback: loader (cached epochs, --epochs 0) ->
augmenter --workers N -> a sink here that counts views. After a warm-up,
measures views/s over --seconds; samples each worker's RSS at the times given
by --rss-at (seconds after start). Prints one JSON line per worker count:
  {"bench": "augment_scaling", "workers": 2, "views_per_s": ..., "rss_kb": {"60": [..]}}
and a last line with the speedup of the largest count over 1 worker.
Run from the repository root after `make`.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

import msgpack
import zmq

STOP = {"fmt": "sslpipe", "ver": 1, "type": "control", "kind": "stop",
        "sender": "augment_scaling@localhost:0", "epoch": 0, "count": 0}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def run(args, workers):
    lp, cp, pp = free_port(), free_port(), free_port()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{cp}")
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"tcp://127.0.0.1:{pp}")
    build = args.build
    aug = subprocess.Popen(
        [f"{build}/bin/augmenter", "--connect", f"tcp://127.0.0.1:{lp}", "--push", f"tcp://127.0.0.1:{cp}",
         "--control", f"tcp://127.0.0.1:{pp}", "--workers", str(workers), "--size", str(args.size),
         "--recipe", args.recipe, "--dtype", args.dtype, "--batch", str(args.batch), "--quiet"],
        stderr=subprocess.PIPE, text=True)
    loader = subprocess.Popen(
        [f"{build}/bin/loader", "--data", args.data, "--epochs", "0", "--bind", f"tcp://127.0.0.1:{lp}",
         "--control", f"tcp://127.0.0.1:{pp}", "--quiet", "--threads", "1"]
        + (["--limit", str(args.limit)] if args.limit else []),
        stderr=subprocess.DEVNULL)
    start = time.time()
    views = 0
    t_begin = None
    rss = {}
    pending_rss = sorted(args.rss_at)
    end = start + args.warmup + args.seconds
    while True:
        now = time.time()
        if pending_rss and now - start >= pending_rss[0]:
            rss[str(pending_rss.pop(0))] = [rss_kb(p) for p in children(aug.pid)]
        if now >= end and not pending_rss:
            break
        if not pull.poll(100):
            continue
        m = msgpack.unpackb(pull.recv(copy=False).buffer, raw=False)
        if m.get("type") != "viewbatch":
            continue
        if now - start >= args.warmup:
            if t_begin is None:
                t_begin = now
                views = 0
            views += m["views"] * len(m["samples"])
            if now >= end:
                t_end = now
        else:
            t_end = now
    measured = max(min(time.time(), end) - (t_begin or end), 1e-9)
    for _ in range(10):
        pub.send(msgpack.packb(STOP))
        time.sleep(0.1)
    for p in (aug, loader):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    ctx.destroy(0)
    return {"bench": "augment_scaling", "workers": workers, "recipe": args.recipe, "size": args.size,
            "dtype": args.dtype, "views_per_s": round(views / measured, 1), "rss_kb": rss,
            "cores": os.cpu_count()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--data", default="../shared/data/imagenet-sample")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--recipe", default="simclr")
    ap.add_argument("--dtype", default="u8")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rss-at", type=float, nargs="*", default=[])
    args = ap.parse_args()
    results = []
    for w in map(int, args.workers.split(",")):
        r = run(args, w)
        print(json.dumps(r), flush=True)
        results.append(r)
    if len(results) > 1 and results[0]["views_per_s"] > 0:
        print(json.dumps({"bench": "augment_scaling_speedup",
                          "workers": results[-1]["workers"],
                          "speedup": round(results[-1]["views_per_s"] / results[0]["views_per_s"], 2)}))


if __name__ == "__main__":
    sys.exit(main())
