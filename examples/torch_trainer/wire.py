"""The PyTorch trainer's side of the wire protocol (proto/PROTOCOL.md), with
python3-msgpack and python3-zmq:

- Epochs: which samples of each recent epoch were taken and trained, the
  bookkeeping that makes every sample trained exactly once per epoch
  (trainer/epochs.c, same rules and the same JSON in the state file, so a
  checkpoint's sets carry over between the C and the PyTorch trainer).
- Feed: the receive thread. It binds the PULL socket the augmenters push
  to, decodes ViewBatches, drops copies of samples already taken, and
  assembles batches (numpy, float32 in [0, 1]) into a small queue while the
  model trains.
- Control: the XPUB socket. Heartbeat, Have and Stats every second, an Ack
  after each step, STOP at the end, each as [topic, body]; it reads the
  beats of the loader and augmenter workers and logs one that falls silent.
"""
import queue
import socket
import sys
import threading
import time

import msgpack
import numpy as np
import zmq

FORMAT, VERSION = "sslpipe", 1
MAX_MESSAGE_BYTES = 256 << 20          # PROTO_MAX_MESSAGE_BYTES
MAX_ACK_INDICES = 65536                # PROTO_MAX_ACK_INDICES
EPOCHS_KEPT = 4                        # trainer/epochs.h
EPOCHS_MAX_INDEX = 1 << 28
MIN_BITS = 4096
U8_SCALE = np.float32(1.0 / 255.0)     # u8 views -> [0, 1], as trainer/batch.c
SIMCLR_VIEWS = 2
SILENT_S, FORGET_S = 3.0, 60.0         # a peer without beats this long: silent / forgotten
RECV_SLICE_MS = 100

NEW, DUPLICATE, CLOSED, QUEUED = range(4)


def identity(stage):
    """'<stage>@<host>:<pid>', the sender field of every message."""
    return "%s@%s:%d" % (stage, socket.gethostname(), __import__("os").getpid())


def header(kind):
    return {"fmt": FORMAT, "ver": VERSION, "type": kind}


# ------------------------------------------------------------------ epochs

class _Slot:
    __slots__ = ("epoch", "seen", "done", "admitted", "trained", "skipped", "duplicates", "expected",
                 "ended", "reported")

    def __init__(self, epoch):
        self.epoch = epoch
        self.seen = bytearray()
        self.done = bytearray()
        self.admitted = self.trained = self.skipped = self.duplicates = self.expected = 0
        self.ended = self.reported = False

    def cover(self, index):
        if index >= len(self.seen) * 8:
            bits = max(MIN_BITS, len(self.seen) * 8)
            while bits <= index:
                bits *= 2
            grow = bits // 8 - len(self.seen)
            self.seen.extend(bytes(grow))
            self.done.extend(bytes(grow))

    def complete(self):
        return self.ended and self.trained + self.skipped >= self.expected

    def record(self):
        return {"epoch": self.epoch, "distinct": self.trained, "skipped": self.skipped,
                "duplicates": self.duplicates, "expected": self.expected if self.ended else 0,
                "complete": self.ended and self.trained + self.skipped == self.expected}

    def used_bytes(self):
        n = len(self.done)
        while n > 0 and self.done[n - 1] == 0:
            n -= 1
        return n


def _bit(buf, i):
    return (buf[i >> 3] >> (i & 7)) & 1


def _set(buf, i):
    buf[i >> 3] |= 1 << (i & 7)


class Epochs:
    """trainer/epochs.c in Python: not thread-safe (Feed holds its lock)."""

    def __init__(self):
        self.slots = []
        self.closed_upto = None        # epochs <= this one without a slot are closed
        self.pending = []              # records of slots closed before they were reported
        self.duplicates = 0

    def _find(self, epoch):
        for s in self.slots:
            if s.epoch == epoch:
                return s
        return None

    def _close(self, s):
        if not s.reported and len(self.pending) < EPOCHS_KEPT:
            self.pending.append(s.record())
        if self.closed_upto is None or s.epoch > self.closed_upto:
            self.closed_upto = s.epoch
        self.slots.remove(s)

    def _open(self, epoch):
        if len(self.slots) >= EPOCHS_KEPT:
            victim = None
            for s in self.slots:
                if (victim is None or (s.reported and not victim.reported)
                        or (s.reported == victim.reported and s.epoch < victim.epoch)):
                    victim = s
            if not victim.reported and epoch < victim.epoch:
                return None
            self._close(victim)
        s = _Slot(epoch)
        self.slots.append(s)
        return s

    def admit(self, epoch, index):
        s = self._find(epoch)
        if s is None and not (self.closed_upto is not None and epoch <= self.closed_upto):
            s = self._open(epoch)
        if s is None:
            self.duplicates += 1
            return CLOSED
        if index >= EPOCHS_MAX_INDEX:
            s.admitted += 1
            return NEW
        s.cover(index)
        if _bit(s.seen, index):
            s.duplicates += 1
            self.duplicates += 1
            return DUPLICATE if _bit(s.done, index) else QUEUED
        _set(s.seen, index)
        s.admitted += 1
        return NEW

    def _mark(self, epoch, index):
        s = self._find(epoch)
        if s is not None and index < len(s.done) * 8:
            _set(s.done, index)
        return s

    def trained(self, epoch, index):
        s = self._mark(epoch, index)
        if s is not None:
            s.trained += 1

    def skipped(self, epoch, index):
        s = self._mark(epoch, index)
        if s is not None:
            s.skipped += 1

    def end(self, epoch, count):
        s = self._find(epoch)
        if s is None and not (self.closed_upto is not None and epoch <= self.closed_upto):
            s = self._open(epoch)
        if s is not None:
            s.ended, s.expected = True, count

    def next_record(self, all_open):
        """One record ready to write (a complete epoch; with all_open, any)."""
        if self.pending:
            return self.pending.pop(0)
        ready = [s for s in self.slots if not s.reported and (all_open or s.complete())]
        if not ready:
            return None
        best = min(ready, key=lambda s: s.epoch)
        best.reported = True
        return best.record()

    def current(self):
        """(epoch training is in, known): the oldest one not complete."""
        known = self.closed_upto is not None or bool(self.slots)
        open_ = [s.epoch for s in self.slots if not s.complete()]
        if open_:
            return min(open_), True
        newest = max([s.epoch for s in self.slots] + ([self.closed_upto] if self.closed_upto is not None else []),
                     default=-1)
        return (newest + 1 if known else 0), known

    def have(self):
        """(epoch, [done bytes per epoch from it]) for a Have, or None."""
        epoch, known = self.current()
        if not known:
            return None
        done = []
        for s in self.slots:
            k = s.epoch - epoch
            if 0 <= k < EPOCHS_KEPT:
                while len(done) <= k:
                    done.append(b"")
                done[k] = bytes(s.done[:s.used_bytes()])
        return epoch, done

    def record_out(self, epoch):
        s = self._find(epoch)
        if s is not None:
            return s.reported
        if any(r["epoch"] == epoch for r in self.pending):
            return False
        return self.closed_upto is not None and epoch <= self.closed_upto

    def to_json(self):
        """The state file's "epoch_sets" (trainer/epochs.c epochs_to_json)."""
        return {"closed_upto": -1 if self.closed_upto is None else self.closed_upto,
                "duplicates": self.duplicates,
                "slots": [{"epoch": s.epoch, "trained": s.trained, "skipped": s.skipped,
                           "duplicates": s.duplicates, "expected": s.expected, "ended": s.ended,
                           "reported": s.reported, "done": bytes(s.done[:s.used_bytes()]).hex()}
                          for s in self.slots],
                "pending": list(self.pending)}

    @classmethod
    def from_json(cls, j):
        e = cls()
        try:
            e.closed_upto = None if j["closed_upto"] < 0 else int(j["closed_upto"])
            e.duplicates = int(j["duplicates"])
            for o in j["slots"][:EPOCHS_KEPT]:
                s = _Slot(int(o["epoch"]))
                s.trained, s.skipped = int(o["trained"]), int(o["skipped"])
                s.duplicates, s.expected = int(o["duplicates"]), int(o["expected"])
                s.ended, s.reported = bool(o["ended"]), bool(o["reported"])
                s.done = bytearray.fromhex(o["done"])
                s.seen = bytearray(s.done)       # what is not done is taken again
                s.admitted = s.trained + s.skipped
                e.slots.append(s)
            e.pending = [dict(r) for r in j["pending"][:EPOCHS_KEPT]]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError("epoch_sets: %s" % err) from None
        return e


# ------------------------------------------------------------------ batches

class Batch:
    """One assembled batch. x (rows, C, H, W) float32; simclr rows 0..N-1
    first views, N..2N-1 second views; rotnet rows i*K+k; supervised row i.
    targets (rows,) int64 for rotnet and supervised."""

    def __init__(self, method, images, views, chw):
        self.method, self.images, self.views = method, images, views
        self.rows = images * (SIMCLR_VIEWS if method == "simclr" else 1 if method == "supervised" else views)
        self.x = np.empty((self.rows,) + tuple(chw), dtype=np.float32)
        self.targets = np.empty(self.rows, dtype=np.int64) if method != "simclr" else None
        self.epoch = np.empty(images, dtype=np.int64)
        self.index = np.empty(images, dtype=np.int64)
        self.filled = 0

    def put(self, views, s):
        """Adds one sample (its views (K, C, H, W), its map); True when full."""
        i = self.filled
        if self.method == "simclr":
            self.x[i] = views[0]
            self.x[self.images + i] = views[1]
        elif self.method == "supervised":
            self.x[i] = views[0]
            self.targets[i] = s["label"]
        else:
            k = self.views
            self.x[i * k:(i + 1) * k] = views
            self.targets[i * k:(i + 1) * k] = s["targets"]
        self.epoch[i], self.index[i] = s["epoch"], s["index"]
        self.filled += 1
        return self.filled == self.images


class Feed(threading.Thread):
    """The receive thread: PULL bind, decode, admit, assemble, queue."""

    def __init__(self, ctx, endpoint, hwm, method, images, classes, chw, slots, epochs):
        super().__init__(name="feed", daemon=True)
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.method, self.images, self.classes = method, images, classes
        self.chw = tuple(chw) if chw else None     # (C, H, W) once known
        self.views = None
        self.ready = queue.Queue(maxsize=max(1, slots))
        self.lock = threading.Lock()
        self.ep = epochs                           # under lock
        self.dup_acks = []                         # (epoch, index) to acknowledge untrained; under lock
        self.stop = threading.Event()
        self.filling = None
        self.st = dict(messages=0, viewbatches=0, samples=0, dropped=0, skipped=0, batches=0,
                       end_of_epochs=0, epoch_count=0, end_of_stream=False, last_data=0.0, last_error="")

    # -- thread side
    def _drop(self, why):
        with self.lock:
            self.st["dropped"] += 1
            self.st["last_error"] = why

    def _check(self, m):
        k, c, h, w = m["views"], m["channels"], m["height"], m["width"]
        if m["dtype"] not in ("f32", "u8"):
            return "viewbatch: unknown dtype %r" % m["dtype"]
        if self.chw and (c, h, w) != self.chw:
            return "viewbatch: views are %dx%dx%d (CxHxW), this run trains on %dx%dx%d" % ((c, h, w) + self.chw)
        if self.views and k != self.views:
            return "viewbatch: %d views per sample, this run receives %d" % (k, self.views)
        if self.method == "simclr" and k < SIMCLR_VIEWS:
            return "viewbatch: %d view(s) per sample, simclr needs 2 (augmenter --recipe simclr)" % k
        if self.method == "supervised" and k != 1:
            return "viewbatch: %d views per sample, supervised trains on 1 (augmenter --recipe supervised)" % k
        if self.method == "rotnet":
            for s in m["samples"]:
                if len(s["targets"]) != k or any(t < 0 or t >= self.classes for t in s["targets"]):
                    return ("viewbatch: targets %s, rotnet needs %d targets in 0..%d (augmenter --recipe rotnet)"
                            % (s["targets"], k, self.classes - 1))
        return None

    def _on_viewbatch(self, m):
        why = self._check(m)
        if why:
            self._drop(why)
            return
        k, c, h, w = m["views"], m["channels"], m["height"], m["width"]
        if self.chw is None:
            self.chw = (c, h, w)
        if self.views is None:
            self.views = k
        dt = np.dtype("<f4") if m["dtype"] == "f32" else np.dtype("u1")
        n = k * c * h * w
        for s in m["samples"]:
            data = s["data"]
            if len(data) != n * dt.itemsize:
                self._drop("viewbatch: a sample's data is %d bytes, expected %d" % (len(data), n * dt.itemsize))
                continue
            usable = self.method != "supervised" or 0 <= s["label"] < self.classes
            with self.lock:
                v = self.ep.admit(s["epoch"], s["index"])
                if v in (DUPLICATE, CLOSED):
                    self.dup_acks.append((s["epoch"], s["index"]))
                elif v == NEW and not usable:
                    self.ep.skipped(s["epoch"], s["index"])
                    self.dup_acks.append((s["epoch"], s["index"]))
                    self.st["skipped"] += 1
            if v != NEW or not usable:
                continue
            views = np.frombuffer(data, dtype=dt).reshape(k, c, h, w)
            if dt.kind == "u":
                views = views * U8_SCALE
            if self.filling is None:
                self.filling = Batch(self.method, self.images, k, (c, h, w))
            if self.filling.put(views, s):
                while not self.stop.is_set():
                    try:
                        self.ready.put(self.filling, timeout=RECV_SLICE_MS / 1000)
                        break
                    except queue.Full:
                        continue
                self.filling = None
                with self.lock:
                    self.st["batches"] += 1
        with self.lock:
            self.st["viewbatches"] += 1
            self.st["samples"] += len(m["samples"])
            self.st["last_data"] = time.monotonic()

    def _on_message(self, frame):
        with self.lock:
            self.st["messages"] += 1
        try:
            m = msgpack.unpackb(frame, raw=False)
            if not isinstance(m, dict) or m.get("fmt") != FORMAT:
                raise ValueError("not an sslpipe message")
            if m.get("ver") != VERSION:
                raise ValueError("message has protocol version %s, this program speaks version %d"
                                 % (m.get("ver"), VERSION))
            kind = m.get("type")
            if kind == "viewbatch":
                self._on_viewbatch(m)
            elif kind == "control":
                with self.lock:
                    if m["kind"] == "end_of_epoch":
                        if self.st["end_of_epochs"] == 0:
                            self.st["epoch_count"] = m["count"]
                        self.st["end_of_epochs"] += 1
                        self.ep.end(m["epoch"], m["count"])
                    elif m["kind"] == "end_of_stream":
                        self.st["end_of_stream"] = True
            elif kind != "stats":
                raise ValueError("unexpected %s message on the ViewBatch socket" % kind)
        except (ValueError, KeyError, TypeError, msgpack.exceptions.ExtraData,
                msgpack.exceptions.FormatError, msgpack.exceptions.StackError) as e:
            self._drop(str(e) or type(e).__name__)

    def run(self):
        while not self.stop.is_set():
            try:
                if not self.sock.poll(RECV_SLICE_MS):
                    continue
                frame = self.sock.recv(copy=False)
            except zmq.ZMQError as e:
                if e.errno == zmq.ETERM:
                    break
                self._drop("receive failed: %s" % e)
                continue
            self._on_message(frame.buffer)
        self.sock.close(linger=0)

    # -- trainer side
    def take(self, timeout_s):
        try:
            return self.ready.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def trained(self, b):
        with self.lock:
            for e, i in zip(b.epoch.tolist(), b.index.tolist()):
                self.ep.trained(e, i)

    def take_duplicates(self):
        with self.lock:
            d, self.dup_acks = self.dup_acks, []
        return d

    def stats(self):
        with self.lock:
            s = dict(self.st)
            s["duplicates"] = self.ep.duplicates
        return s

    def call(self, fn, *args):
        """Runs fn(epochs, *args) under the lock."""
        with self.lock:
            return fn(self.ep, *args)

    def shutdown(self):
        self.stop.set()
        self.join(timeout=5)


# ------------------------------------------------------------------ control

class Control:
    """The trainer's Control socket: an XPUB (a PUB that also reads the beats
    that the loader and augmenter workers send up it)."""

    def __init__(self, ctx, endpoint, sender, log):
        self.sender, self.log = sender, log
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind(endpoint)
        self.peers = {}            # sender -> [last beat, silent since (or None)]
        self.last_look = None      # when hear_beats last ran

    def publish(self, topic, body):
        try:
            self.sock.send_multipart([topic.encode(), msgpack.packb(body, use_bin_type=True)], zmq.DONTWAIT)
        except zmq.Again:
            pass    # best effort: PUB drops for a slow subscriber anyway

    def control(self, kind, epoch, count):
        self.publish(kind, dict(header("control"), kind=kind, sender=self.sender, epoch=int(epoch),
                                count=int(count)))

    def have(self, epoch, step, done):
        self.publish("have", dict(header("have"), sender=self.sender, epoch=int(epoch), step=int(step),
                                  done=list(done)))

    def stats(self, counters):
        self.publish("stats", dict(header("stats"), sender=self.sender, time=time.time(),
                                   counters={k: float(v) for k, v in counters.items()}))

    def acks(self, pairs):
        """Acks for (epoch, index) pairs: one message per epoch (and per
        MAX_ACK_INDICES)."""
        by_epoch = {}
        for e, i in pairs:
            by_epoch.setdefault(int(e), []).append(int(i))
        for e, idx in by_epoch.items():
            for lo in range(0, len(idx), MAX_ACK_INDICES):
                self.publish("ack", dict(header("ack"), sender=self.sender, epoch=e,
                                         indices=idx[lo:lo + MAX_ACK_INDICES]))

    def hear_beats(self, now):
        """Reads what came up the socket (subscriptions and beats) and logs
        a peer silent for SILENT_S and its return. After a long step (this
        thread not looking for SILENT_S) the count starts afresh rather than
        report the beats still queued. Returns the number of heartbeats read."""
        if self.last_look is not None and now - self.last_look >= SILENT_S:
            for p in self.peers.values():
                if p[1] is None:
                    p[0] = now
        self.last_look = now
        beats = 0
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not frame or frame[0] in (0, 1):
                continue          # a subscription
            try:
                m = msgpack.unpackb(frame, raw=False)
                kind, who = m.get("kind"), m.get("sender")
            except Exception:     # a malformed beat is ignored: monitoring only
                continue
            if m.get("type") != "control" or not isinstance(who, str):
                continue
            if kind == "end_of_stream":
                self.peers.pop(who, None)
            elif kind == "heartbeat":
                beats += 1
                p = self.peers.setdefault(who, [now, None])
                if p[1] is not None:
                    self.log("%s back after %.0f s" % (who, now - p[1]))
                p[0], p[1] = now, None
        for who, p in list(self.peers.items()):
            if now - p[0] >= FORGET_S:
                del self.peers[who]
            elif p[1] is None and now - p[0] >= SILENT_S:
                p[1] = p[0]
                self.log("%s silent for %.0f s (stopped or hung?)" % (who, SILENT_S))
        return beats

    def close(self):
        self.sock.close(linger=1000)


def log_to_stderr(prefix):
    def log(msg):
        print("%s: %s" % (prefix, msg), file=sys.stderr, flush=True)
    return log
