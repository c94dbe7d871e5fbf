#!/usr/bin/python3
"""Augmenter throughput with 1 and 2 worker processes, and worker memory over time.

Runs the real pipeline on loopback: loader (cached epochs, --epochs 0) ->
augmenter --workers N -> build/tools/view_sink, a C consumer that decodes
every ViewBatch and counts views. After a warm-up, the sink counts views for
--seconds while this script reads every process's CPU time from /proc, so
each line says where the two cores went: the workers' share, the loader's and
the sink's, and the workers' CPU microseconds per view (flat from 1 to 2
workers means the work itself scales; the wall-clock speed-up is then bounded
by the cores the loader and the sink take). Worker RSS is sampled at the
times given by --rss-at (seconds after start). One JSON line per worker count:
  {"bench": "augment_scaling", "workers": 2, "views_per_s": ..., "worker_cpu_us_per_view": ...,
   "cores_used": {"workers": ..., "loader": ..., "sink": ...}, "rss_kb": {"60": [..]}}
and a last line with the speed-up of the largest count over 1 worker.
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


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_snapshot(procs):
    """CPU seconds per role: {"workers": ..., "loader": ..., "sink": ...}."""
    aug, loader, sink = procs
    workers = sum(cpu_seconds(p) for p in children(aug.pid)) + cpu_seconds(aug.pid)
    return {"workers": workers, "loader": cpu_seconds(loader.pid), "sink": cpu_seconds(sink.pid)}


def run(args, workers):
    lp, cp, pp = free_port(), free_port(), free_port()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"tcp://127.0.0.1:{pp}")
    build = args.build
    sink = subprocess.Popen(
        [f"{build}/tools/view_sink", "--bind", f"tcp://127.0.0.1:{cp}", "--warmup", str(args.warmup),
         "--seconds", str(args.seconds)], stdout=subprocess.PIPE, text=True)
    aug = subprocess.Popen(
        [f"{build}/bin/augmenter", "--connect", f"tcp://127.0.0.1:{lp}", "--push", f"tcp://127.0.0.1:{cp}",
         "--control", f"tcp://127.0.0.1:{pp}", "--workers", str(workers), "--size", str(args.size),
         "--recipe", args.recipe, "--dtype", args.dtype, "--batch", str(args.batch), "--quiet"],
        stderr=subprocess.PIPE, text=True)
    loader = subprocess.Popen(
        [f"{build}/bin/loader", "--data", args.data, "--epochs", "0", "--bind", f"tcp://127.0.0.1:{lp}",
         "--control", f"tcp://127.0.0.1:{pp}", "--quiet", "--threads", "1"]
        + (["--limit", str(args.limit)] if args.limit else []) + args.loader_opt,
        stderr=subprocess.DEVNULL)
    procs = (aug, loader, sink)
    start = time.time()
    rss = {}
    pending = sorted(args.rss_at)
    time.sleep(args.warmup)
    cpu0, t0 = cpu_snapshot(procs), time.time()
    while pending and time.time() - start < args.warmup + args.seconds:
        wait = start + pending[0] - time.time()
        if wait > 0:
            time.sleep(min(wait, start + args.warmup + args.seconds - time.time()))
        if time.time() - start >= pending[0]:
            rss[str(pending.pop(0))] = [rss_kb(p) for p in children(aug.pid)]
    time.sleep(max(0.0, start + args.warmup + args.seconds - time.time()))
    cpu1, t1 = cpu_snapshot(procs), time.time()
    for at in pending:   # RSS samples asked for after the measurement
        time.sleep(max(0.0, start + at - time.time()))
        rss[str(at)] = [rss_kb(p) for p in children(aug.pid)]
    out, _ = sink.communicate(timeout=60)
    measured = json.loads(out.strip().splitlines()[-1])
    for _ in range(10):
        pub.send(msgpack.packb(STOP))
        time.sleep(0.1)
    for p in (aug, loader):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    ctx.destroy(0)
    wall = max(t1 - t0, 1e-9)
    cores = {k: round((cpu1[k] - cpu0[k]) / wall, 2) for k in cpu0}
    vps = measured["views_per_s"]
    return {"bench": "augment_scaling", "workers": workers, "recipe": args.recipe, "size": args.size,
            "dtype": args.dtype, "views_per_s": round(vps, 1),
            "worker_cpu_us_per_view": round(1e6 * cores["workers"] / vps, 1) if vps > 0 else None,
            "cores_used": cores, "rss_kb": rss, "cores": os.cpu_count()}


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
    ap.add_argument("--loader-opt", action="append", default=[],
                    help="an extra loader option, e.g. --loader-opt=--max-side=256 (repeatable)")
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
