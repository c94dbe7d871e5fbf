#!/usr/bin/python3
"""Sends garbage to the listening sockets of a running pipeline (used by
tests/it_garbage.sh). Deterministic from --seed.

  garbage.py --raw HOST:PORT ...         raw TCP: random bytes, a ZMTP greeting cut short
                                         or followed by junk, a huge declared frame size
  garbage.py --push-trainer EP           PUSH to the trainer's PULL: random bytes, cut and
                                         mutated ViewBatches, valid messages of the wrong type
  garbage.py --push-evaluator EP         the same for the evaluator's PULL (Checkpoint)
  garbage.py --peer-sub EP / --peer-pull EP   connect a SUB / PULL peer, read a little, leave

Prints one JSON line: how many messages of each kind it sent, and how many
of them no decoder can accept ("invalid").
"""
import argparse, json, random, socket, time
import msgpack, zmq

HEAD = {"fmt": "sslpipe", "ver": 1}


def viewbatch(rng, size=28):
    n = 2
    return msgpack.packb(dict(HEAD, type="viewbatch", dtype="u8", views=4, channels=1, height=size, width=size,
                              samples=[{"index": i, "epoch": 0, "label": 1, "targets": [0, 1, 2, 3],
                                        "data": bytes(rng.randrange(256) for _ in range(4 * size * size))}
                                       for i in range(n)]))


def checkpoint(rng):
    return msgpack.packb(dict(HEAD, type="checkpoint", step=rng.randrange(1, 10**6), epoch=0, method="simclr",
                              arch="conv 3 8\n" * 3, path="/nonexistent/ckpt.safetensors"))


def others():
    return [msgpack.packb(dict(HEAD, type="sample", index=1, epoch=0, label=0, height=2, width=2, channels=1,
                               pixels=bytes(4))),
            msgpack.packb(dict(HEAD, type="control", kind="heartbeat", epoch=0, count=0, sender="garbage")),
            msgpack.packb(dict(HEAD, type="no-such-type")),
            msgpack.packb(dict(HEAD, ver=99, type="viewbatch")),
            msgpack.packb([1, 2, 3]), msgpack.packb("a string"), msgpack.packb(None), b""]


def messages(rng, valid):
    """(bytes, certainly_invalid) pairs."""
    out = []
    for k in range(30):                                      # random bytes; 0xc1 is never valid msgpack
        out.append((b"\xc1" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000))), True))
    for k in range(30):                                      # cut short: an incomplete map
        out.append((valid[: rng.randrange(1, len(valid) - 1)], True))
    for k in range(60):                                      # a few bytes changed: may still be valid
        b = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(min(len(b), 200))] = rng.randrange(256)
        out.append((bytes(b), False))
    # declared sizes far beyond the bytes present (bin32 and array32 headers)
    out.append((valid[:-10] + b"\xc6\xff\xff\xff\xf0", True))
    out.append((b"\x81\xa3fmt\xdd\xff\xff\xff\xff", True))
    out += [(m, False) for m in others()]                    # well-formed, but not what this socket takes
    return out


def push(ep, valid, seed):
    rng = random.Random(seed)
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 5000)
    s.setsockopt(zmq.SNDHWM, 100000)
    s.connect(ep)
    msgs = messages(rng, valid)
    for m, _ in msgs:
        s.send(m)
    s.send_multipart([b"part one", b"part two"])            # a multipart message
    s.close()
    ctx.term()                                               # waits (up to the linger) for delivery
    return {"sent": len(msgs) + 1, "invalid": sum(bad for _, bad in msgs) + 1}


def raw(hostport, seed):
    rng = random.Random(seed)
    host, port = hostport.rsplit(":", 1)
    greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00NULL" + bytes(16) + b"\x00" + bytes(31)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5000))) for _ in range(8)]
    payloads += [greeting[:5], greeting[:11], greeting + bytes(rng.randrange(256) for _ in range(300)),
                 greeting + b"\x04\xff" + bytes(100),                      # command frame, bad size
                 greeting + b"\x02" + b"\x7f\xff\xff\xff\xff\xff\xff\xff",   # long frame of 2^63 bytes
                 b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
    sent = 0
    for p in payloads:
        try:
            with socket.create_connection((host, int(port)), timeout=2) as c:
                c.sendall(p)
                c.settimeout(0.2)
                try:
                    c.recv(4096)
                except OSError:
                    pass
            sent += 1
        except OSError:
            pass
    return {"connections": sent}


def peer(kind, ep, seconds=1.0):
    ctx = zmq.Context()
    s = ctx.socket(kind)
    if kind == zmq.SUB:
        s.setsockopt(zmq.SUBSCRIBE, b"")
    s.setsockopt(zmq.RCVHWM, 2)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    got, end = 0, time.time() + seconds
    while time.time() < end:
        if s.poll(100):
            s.recv()
            got += 1
            if got >= 3:
                break
    s.close()                                                # leave without a goodbye
    ctx.term()
    return {"received": got}


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--raw", nargs="*", default=[])
    a.add_argument("--push-trainer")
    a.add_argument("--push-evaluator")
    a.add_argument("--peer-sub")
    a.add_argument("--peer-pull")
    a.add_argument("--seed", type=int, default=1)
    o = a.parse_args()
    rng = random.Random(o.seed)
    r = {}
    for k, hp in enumerate(o.raw):
        r[f"raw {hp}"] = raw(hp, o.seed + k)
    if o.push_trainer:
        r["trainer"] = push(o.push_trainer, viewbatch(rng), o.seed)
    if o.push_evaluator:
        r["evaluator"] = push(o.push_evaluator, checkpoint(rng), o.seed)
    if o.peer_sub:
        r["sub peer"] = peer(zmq.SUB, o.peer_sub)
    if o.peer_pull:
        r["pull peer"] = peer(zmq.PULL, o.peer_pull)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
