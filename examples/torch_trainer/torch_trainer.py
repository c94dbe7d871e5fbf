#!/usr/bin/env python3
"""A PyTorch trainer that takes the C trainer's place in the pipeline.

    python3 examples/torch_trainer/torch_trainer.py --method simclr --arch resnet-mini --width 16 \\
        --batch 256 --epochs 4 --dataset-size 60000 --out runs/torch

Sockets (the C trainer's, same defaults):
  PULL  bind     tcp://127.0.0.1:5556 (--bind)       ViewBatches from the augmenters, and the
                                                     loader's end_of_epoch / end_of_stream
  XPUB  bind     tcp://127.0.0.1:5558 (--control)    heartbeat + Have + Stats every second, an Ack
                                                     after each step, STOP at the end, each as
                                                     [topic, body]; the beats of the loader and
                                                     augmenter workers come up it
  PUSH  connect  tcp://127.0.0.1:5557 (--evaluator)  a Checkpoint after each save (conflated,
                                                     never waits)

A receive thread assembles batches while the model trains (the time the
training loop waits for one is the "data wait"). Methods simclr (NT-Xent)
rotnet (4-way rotation cross-entropy) and supervised; networks: the
project's presets (resnet-mini, conv4), a network description file
(nn/README.md), or torchvision:NAME. Checkpoints are the C trainer's
safetensors files (the C evaluator and nntool read them; the C trainer
resumes them) with its state file beside them; --resume takes this
trainer's checkpoints and the C trainer's. Needs Debian's python3-torch,
python3-zmq, python3-msgpack, python3-numpy (python3-torchvision for
torchvision:NAME). Exit status: 0 done, 1 runtime failure, 2 bad usage.
"""
import argparse
import json
import math
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import msgpack  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import zmq  # noqa: E402

import sslnet  # noqa: E402
import wire  # noqa: E402

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
STATE_FORMAT, STATE_VERSION = "sslcpu-trainer-state", 1    # trainer/rundir.h
LATEST, METRICS = "latest", "metrics.jsonl"
METHODS = ("simclr", "rotnet", "supervised")
BASE_LR = {"simclr": 0.3, "rotnet": 0.05, "supervised": 0.1}
WEIGHT_DECAY = {"simclr": 5e-4, "rotnet": 1e-4, "supervised": 5e-4}
BATCH = {"simclr": 128, "rotnet": 256, "supervised": 256}     # the C trainer's defaults
LOSSES = ("ntxent", "dcl")
LR_BATCH_REF = 256.0
WARMUP_SHARE = 0.05
HEARTBEAT_S = 1.0
EOS_IDLE_S = 1.0
TAKE_SLICE_S = 0.2
PROGRESS_S = 2.0
WAIT_LOG_S = 10.0
DROP_LOG_S = 5.0
STOP_REPEATS, STOP_INTERVAL_S = 5, 0.1
STOP_LINGER_S = 3.0                  # STOP goes out again while beats still come, this long at most
BEAT_GAP_S = 1.5                     # no beat for this long: every stage heard the STOP
EVALUATOR_LINGER_MS = 500
ACC_WINDOW = 20
MAX_TEXT = 4095                      # PROTO_MAX_TEXT: the Checkpoint's arch field

log = wire.log_to_stderr("torch_trainer")


class Usage(Exception):
    """Bad usage: exit 2 with the message."""


# ------------------------------------------------------------------ options

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="torch_trainer.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Takes the C trainer's place: pulls ViewBatches from the augmenters, trains with "
                    "PyTorch (CUDA when present), writes checkpoints the C evaluator reads.",
        epilog="Stops after the steps, epochs or minutes, at the end of the stream, or on SIGINT/SIGTERM (after "
               "writing a checkpoint); then publishes STOP. Exit status: 0 done, 1 runtime failure, 2 bad usage.")
    t = ap.add_argument_group("training")
    t.add_argument("--method", choices=METHODS, help="simclr (default), rotnet or supervised")
    t.add_argument("--classes", type=int, default=10, help="supervised: labels 0..N-1 (default 10)")
    t.add_argument("--arch", help="resnet-mini (default), conv4, a network description file, or "
                                  "torchvision:NAME (e.g. torchvision:resnet18)")
    t.add_argument("--width", type=int, help="channels of a preset's first stage (default 32)")
    t.add_argument("--batch", type=int, help="images per step (default 128 for simclr, 256 for the others)")
    t.add_argument("--lr", type=float, help="peak learning rate (default base x batch/256: simclr 0.3, "
                                            "rotnet 0.05, supervised 0.1)")
    t.add_argument("--weight-decay", type=float, help="SGD weight decay (default 5e-4, rotnet 1e-4)")
    t.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    t.add_argument("--tau", type=float, help="contrastive temperature (default 0.5)")
    t.add_argument("--loss", choices=LOSSES, help="simclr: ntxent (SimCLR's NT-Xent) or dcl (decoupled: the "
                                                  "positive pair left out of the denominator) (default dcl)")
    t.add_argument("--warmup", help="linear warm-up: N steps or Nep epochs (default 5%% of the steps)")
    t.add_argument("--epochs", type=float, help="epochs to train (default 1)")
    t.add_argument("--steps", type=int, help="or exactly this many steps")
    t.add_argument("--minutes", type=float, help="or train for M minutes: the total steps are planned from the "
                                                 "rate measured so far, again after every step (the first step "
                                                 "runs at lr 0; a resumed run's earlier training counts)")
    t.add_argument("--dataset-size", type=int, default=0, help="images per epoch (default: learnt from the "
                                                               "loader's first end_of_epoch)")
    t.add_argument("--seed", type=int, default=1, help="parameter initialisation seed (default 1)")
    t.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:N")
    t.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch; 0: torch's own choice (default 0). On a machine shared with "
                        "other work, 1 is often faster than more: a thread that loses its core stalls the others")
    s = ap.add_argument_group("sockets")
    s.add_argument("--bind", default="tcp://127.0.0.1:5556", help="PULL for ViewBatches (default %(default)s)")
    s.add_argument("--control", default="tcp://127.0.0.1:5558", help="XPUB for Control, or none "
                                                                    "(default %(default)s)")
    s.add_argument("--evaluator", default="tcp://127.0.0.1:5557", help="PUSH to the evaluator, or none "
                                                                       "(default %(default)s)")
    s.add_argument("--hwm", type=int, default=16, help="ViewBatches queued in the PULL socket (default 16)")
    s.add_argument("--queue", type=int, default=3, help="assembled batches ahead of the step (default 3)")
    s.add_argument("--curve", help="not supported by this trainer (use the C trainer)")
    r = ap.add_argument_group("run folder")
    r.add_argument("--out", help="metrics.jsonl, ckpt-<step>.safetensors + .json, latest (default runs/train)")
    r.add_argument("--ckpt-every", type=int, default=500, help="checkpoint every N steps and at the end "
                                                               "(default 500)")
    r.add_argument("--keep", type=int, default=3, help="keep the last K checkpoints (default 3)")
    r.add_argument("--resume", help="continue from checkpoint P (this trainer's or the C trainer's), or "
                                    "'latest' of --out")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    if a.curve:
        ap.error("--curve is not supported by the PyTorch trainer; run the C trainer for CURVE")
    if a.threads < 0:
        ap.error("--threads must be 0 (torch's choice) or more, not %d" % a.threads)
    for name in ("batch", "width", "ckpt_every", "keep", "hwm", "queue", "steps"):
        v = getattr(a, name)
        if v is not None and v < 1:
            ap.error("--%s must be at least 1, not %d" % (name.replace("_", "-"), v))
    if a.epochs is not None and not a.epochs > 0:
        ap.error("--epochs must be positive")
    if a.minutes is not None and not 0 < a.minutes <= 1e7:
        ap.error("--minutes must be positive")
    given = [o for o, v in (("--epochs", a.epochs), ("--steps", a.steps), ("--minutes", a.minutes)) if v is not None]
    if len(given) > 1:
        ap.error("give one of --epochs, --steps and --minutes, not both %s and %s" % tuple(given[:2]))
    if a.warmup is not None and not re.fullmatch(r"\d+(\.\d+)?(ep)?", a.warmup):
        ap.error("--warmup must be N (steps) or Nep (epochs), not '%s'" % a.warmup)
    if not 2 <= a.classes <= 100000:
        ap.error("--classes must be in 2..100000")
    return a


# ------------------------------------------------------------------ run folder

def ckpt_path(out, step):
    return os.path.join(out, "ckpt-%08d.safetensors" % step)


def state_path(ckpt):
    return re.sub(r"\.safetensors$", "", ckpt) + ".json"


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def point_latest(out, ckpt):
    link = os.path.join(out, LATEST)
    tmp = "%s.tmp.%d" % (link, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.basename(ckpt), tmp)
    os.rename(tmp, link)


def clean_tmp(out):
    """Deletes NAME.tmp.PID files of writers no longer running."""
    n = 0
    for name in os.listdir(out):
        m = re.fullmatch(r".*\.tmp\.(\d+)", name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        os.unlink(os.path.join(out, name))
        n += 1
    return n


def prune(out, keep, current):
    steps = sorted(int(m.group(1)) for m in (re.fullmatch(r"ckpt-(\d+)\.safetensors", n) for n in os.listdir(out))
                   if m and int(m.group(1)) <= current)
    for st in steps[:-keep]:
        p = ckpt_path(out, st)
        for f in (p, state_path(p)):
            if os.path.exists(f):
                os.unlink(f)


def open_metrics(out, keep_upto, record_kept):
    """metrics.jsonl; on resume, the lines of steps after the checkpoint and
    the epoch records it does not count as written are dropped first."""
    path = os.path.join(out, METRICS)
    if keep_upto is not None and os.path.exists(path):
        kept = []
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break            # torn last line
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("step", 0) > keep_upto:
                    continue
                if j.get("record") == "epoch" and record_kept and not record_kept(j["epoch"]):
                    continue
                kept.append(line)
        write_atomic(path, "".join(kept))
    return open(path, "a" if keep_upto is not None else "w", buffering=1)


# ------------------------------------------------------------------ losses

def contrastive(z, tau, decoupled):
    """SimCLR's NT-Xent, or with decoupled the DCL (the positive left out of
    each anchor's denominator, nn/loss.h): rows 0..N-1 first views, N..2N-1
    second views."""
    n2 = z.shape[0]
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.t() / tau
    self_mask = torch.eye(n2, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    pos = (torch.arange(n2, device=z.device) + n2 // 2) % n2
    if not decoupled:
        return F.cross_entropy(sim, pos)
    pos_logit = sim[torch.arange(n2, device=z.device), pos]
    neg = sim.masked_fill(F.one_hot(pos, n2).bool(), float("-inf"))
    return (torch.logsumexp(neg, dim=1) - pos_logit).mean()


def lr_schedule(base, step, warmup, total):
    """nn_lr_schedule: linear warm-up, then cosine to 0 at total."""
    if step < 0 or step >= total:
        return 0.0
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


# ------------------------------------------------------------------ the trainer

class Trainer:
    def __init__(self, a):
        self.a = a
        self.sender = wire.identity("trainer")
        self.stop_signals = 0
        self.step = self.last_ckpt_step = 0
        self.total_steps = self.warmup_steps = 0
        self.images_seen = 0
        self.last_batch_epoch = 0
        self.train_seconds_before = 0.0
        self.run_start = 0.0
        self.first_step = 0
        self.warmup_auto = False
        self.sum_wait = self.sum_period = 0.0
        self.timed_steps = 0
        self.last_loss = float("nan")
        self.last_ckpt = ""
        self.acc = []
        self.net = self.opt = None
        self.opt_steps = 0
        self.desc_net = None            # network known before the first batch (file, resume)
        self.restored = None            # wire.Epochs from the resumed state
        self.resume_path = None
        self.have_state = False
        self.told_no_eval = False

    # -- set-up
    def setup(self):
        a = self.a
        given = {k: getattr(a, k) is not None for k in ("method", "arch", "width", "batch", "lr", "weight_decay",
                                                        "momentum", "tau", "warmup", "epochs", "steps",
                                                        "minutes")}
        self.out = a.out or "runs/train"
        for opt in ("loss", "tau"):
            if getattr(a, opt) is not None and a.method not in (None, "simclr"):
                raise Usage("--%s is SimCLR's contrastive loss setting; --method %s trains with its own "
                            "cross-entropy (leave --%s out)" % (opt, a.method, opt))
        if a.resume:
            self.setup_resume(given)
        else:
            if os.path.lexists(os.path.join(self.out, LATEST)):
                raise Usage("%s already holds a run (%s exists)\nHINT: continue it with --resume latest, or give "
                            "another --out" % (self.out, os.path.join(self.out, LATEST)))
        a.method = a.method or "simclr"
        a.arch = a.arch or "resnet-mini"
        a.width = a.width or 32
        a.batch = a.batch or BATCH[a.method]
        a.loss = a.loss or "dcl"
        a.momentum = 0.9 if a.momentum is None else a.momentum
        a.tau = 0.5 if a.tau is None else a.tau
        if a.lr is None:
            a.lr = BASE_LR[a.method] * a.batch / LR_BATCH_REF
        if a.weight_decay is None:
            a.weight_decay = WEIGHT_DECAY[a.method]
        if a.steps is None and a.epochs is None and not a.minutes:
            a.epochs = 1.0
        self.head = {"simclr": "simclr", "rotnet": "rotation"}.get(a.method, "classifier:%d" % a.classes)
        if self.desc_net is None and not (a.arch in sslnet.PRESETS or a.arch.startswith(sslnet.TORCHVISION_PREFIX)):
            try:
                self.desc_net = sslnet.build(a.arch, a.width, self.head, None)
            except sslnet.DescError as e:
                raise Usage(str(e)) from None
        elif a.arch in sslnet.PRESETS:
            try:
                sslnet.preset_desc(a.arch, a.width, self.head, 3, 32, 32)
            except sslnet.DescError as e:
                raise Usage("--arch %s: %s" % (a.arch, e)) from None
        if self.desc_net is not None:
            self.check_head(self.desc_net)
        self.dataset_size = a.dataset_size
        if not self.total_steps:
            self.total_steps = self.steps_for(self.dataset_size)
        if not self.have_state:
            if a.warmup and a.warmup.endswith("ep"):
                if not self.dataset_size:
                    raise Usage("--warmup %s in epochs needs --dataset-size" % a.warmup)
                self.warmup_steps = round(float(a.warmup[:-2]) * self.dataset_size / a.batch)
            elif a.warmup:
                self.warmup_steps = int(float(a.warmup))
            elif a.minutes:
                self.warmup_auto = True    # planned with the total (plan_budget)
            else:
                self.warmup_steps = round(WARMUP_SHARE * self.total_steps) if self.total_steps else 0
        if a.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            try:
                self.device = torch.device(a.device)
            except RuntimeError as e:
                raise Usage("--device %s: %s" % (a.device, e)) from None
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise Usage("--device %s: CUDA is not available here (use --device cpu)" % a.device)
        if a.threads:
            torch.set_num_threads(a.threads)

    def check_head(self, net):
        a = self.a
        if a.method == "rotnet" and net.out_dim < 4:
            raise Usage("%s: the head has %d outputs, rotnet needs 4" % (a.arch, net.out_dim))
        if a.method == "supervised":
            a.classes = net.out_dim

    def steps_for(self, dataset_size):
        a = self.a
        if a.minutes:
            return self.total_steps      # plan_budget plans it
        if a.steps:
            return a.steps
        if not dataset_size:
            return 0
        return max(1, int(math.floor(a.epochs * dataset_size / a.batch)))

    def setup_resume(self, given):
        a = self.a
        out = a.out or "runs/train"
        path = os.path.join(out, LATEST) if a.resume == LATEST else a.resume
        if not os.path.exists(path):
            raise Usage("--resume %s: no checkpoint at %s" % (a.resume, path))
        path = os.path.realpath(path)
        if a.out is None and a.resume != LATEST:
            self.out = os.path.dirname(path)     # continue beside the checkpoint
        try:
            meta = sslnet.read_meta(path)
        except (OSError, ValueError) as e:
            raise Usage("cannot resume: %s" % e) from None
        self.resume_path = path
        self.resume_meta = meta
        self.step = self.last_ckpt_step = int(meta["step"])
        sp = state_path(path)
        if os.path.exists(sp):
            with open(sp) as f:
                st = json.load(f)
            if st.get("format") != STATE_FORMAT or st.get("version") != STATE_VERSION:
                raise Usage("cannot resume: %s is not a trainer state file of version %d" % (sp, STATE_VERSION))
            if int(st["step"]) != self.step:
                raise Usage("cannot resume: %s says step %s, its checkpoint step %d" % (sp, st["step"], self.step))
            run_loss = st.get("loss", "ntxent")        # a state without it: NT-Xent, the only loss of then
            for opt, key, mine in (("--method", "method", a.method), ("--batch", "batch", a.batch),
                                   ("--arch", "arch", a.arch), ("--loss", "loss", a.loss)):
                run_value = run_loss if key == "loss" else st[key]
                if mine is not None and str(mine) != str(run_value):
                    raise Usage("%s differs from the resumed run's (%s); resume with the same value or start "
                                "a new run in another --out folder" % (opt, run_value))
            if st["optimizer"] != "sgd":
                log("%s was trained with %s; this trainer continues with SGD (its momentum starts afresh)"
                    % (path, st["optimizer"]))
            for opt, key in (("lr", "lr"), ("weight_decay", "weight_decay"), ("momentum", "momentum"),
                             ("tau", "tau")):
                mine = getattr(a, opt)
                if mine is not None and abs(mine - st[key]) > 1e-12 * max(1.0, abs(st[key])):
                    log("--%s %g ignored: the resumed run keeps its %g" % (opt.replace("_", "-"), mine, st[key]))
                setattr(a, opt, st[key])
            if given["warmup"]:
                log("--warmup ignored: the resumed run keeps its %d steps" % st["warmup_steps"])
            a.method, a.arch, a.batch, a.width = st["method"], st["arch"], int(st["batch"]), int(st["width"])
            a.loss = run_loss
            self.warmup_steps = int(st["warmup_steps"])
            if not a.dataset_size:
                a.dataset_size = int(st["dataset_size"])
            if given["epochs"] or given["steps"] or given["minutes"]:
                self.total_steps = 0           # recomputed from the new length
            else:
                a.minutes = float(st.get("minutes", 0.0)) or None     # a state from before time budgets: none
                a.epochs = float(st["epochs"]) or None
                a.steps = None if a.epochs or a.minutes else int(st["total_steps"])
                self.total_steps = int(st["total_steps"])
            a.seed = int(st["seed"])
            self.images_seen = int(st["images_seen"])
            self.train_seconds_before = float(st["train_seconds"])
            self.have_state = True
            if st.get("epoch_sets"):
                try:
                    self.restored = wire.Epochs.from_json(st["epoch_sets"])
                except ValueError as e:
                    raise Usage("cannot resume: %s: %s" % (sp, e)) from None
        else:
            log("%s: no trainer state beside the checkpoint; taking the schedule from the command line" % sp)
            if a.method is not None and a.method != meta.get("method"):
                log("--method %s: the checkpoint was trained with %s" % (a.method, meta.get("method")))
            a.method = a.method or (meta.get("method") if meta.get("method") in METHODS else None)
            a.batch = a.batch or BATCH.get(a.method or "simclr", 256)
            self.images_seen = self.step * a.batch
        if "optimizer" not in meta:
            log("%s holds no optimizer state: the optimizer starts afresh" % path)
        desc = meta["nn_desc"]
        a.method = a.method or "simclr"
        head = {"simclr": "simclr", "rotnet": "rotation"}.get(a.method, "classifier:%d" % a.classes)
        try:
            if desc.startswith(sslnet.TORCHVISION_PREFIX):
                shape = [int(v) for v in meta.get("input", "3 32 32").split()]
                self.desc_net = sslnet.TorchvisionNet(desc[len(sslnet.TORCHVISION_PREFIX):], head, shape)
            else:
                self.desc_net = sslnet.Net(desc)
        except sslnet.DescError as e:
            raise Usage("cannot resume: %s: %s" % (path, e)) from None

    # -- sockets
    def open_sockets(self):
        a = self.a
        self.ctx = zmq.Context()
        self.pub = None
        if a.control != "none":
            self.pub = wire.Control(self.ctx, a.control, self.sender, log)
        self.eval = None
        if a.evaluator != "none":
            self.eval = self.ctx.socket(zmq.PUSH)
            self.eval.setsockopt(zmq.CONFLATE, 1)
            self.eval.setsockopt(zmq.SNDHWM, 1)
            self.eval.setsockopt(zmq.LINGER, EVALUATOR_LINGER_MS)
            self.eval.connect(a.evaluator)
        chw = self.desc_net.input_shape if self.desc_net is not None else None
        self.feed = wire.Feed(self.ctx, a.bind, a.hwm, a.method, a.batch, a.classes, chw, a.queue,
                              self.restored or wire.Epochs())
        self.feed.start()

    # -- the model, built when the first batch shows the input shape
    def build_model(self, b):
        a = self.a
        if self.desc_net is not None:
            net = self.desc_net
        else:
            try:
                net = sslnet.build(a.arch, a.width, self.head, b.x.shape[1:])
            except sslnet.DescError as e:
                log("--arch %s on %s views: %s" % (a.arch, "x".join(map(str, b.x.shape[1:])), e))
                return False
            self.check_head(net)
        torch.manual_seed(a.seed)
        if self.resume_path is None:
            for m in net.modules():       # a fresh seeded initialisation
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self.net = net.to(self.device).to(memory_format=torch.channels_last) \
            if self.device.type == "cuda" else net.to(self.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=a.lr, momentum=a.momentum,
                                   weight_decay=a.weight_decay)
        if self.resume_path:
            try:
                meta = sslnet.load_checkpoint(self.resume_path, self.net, self.opt, self.device)
            except (OSError, ValueError) as e:
                log("cannot resume: %s" % e)
                return False
            self.opt_steps = int(meta.get("optimizer_steps", 0))
            epoch, known = self.feed.call(wire.Epochs.current)
            log("resumed %s at step %d%s" % (self.resume_path, self.step, ", in epoch %d" % epoch if known else ""))
        if a.minutes:
            total = "%g minutes (the steps planned from the measured rate)" % a.minutes
        else:
            total = "%d steps" % self.total_steps if self.total_steps else "steps known after the first epoch"
        warmup = "5%% of the steps" if self.warmup_auto else "%d steps" % self.warmup_steps
        log("%s, %s, %d images (%d views of %s) per step, SGD lr %.4g, weight decay %.2g, warm-up %s, %s, "
            "on %s (%d threads)" % (a.method, a.arch, a.batch, b.rows, "x".join(map(str, b.x.shape[1:])), a.lr,
                                    a.weight_decay, warmup, total, self.device, torch.get_num_threads()))
        return True

    def train_step(self, b, lr):
        """One SGD step; (loss, batch accuracy or nan)."""
        a = self.a
        for g in self.opt.param_groups:
            g["lr"] = lr
        x = torch.from_numpy(b.x).to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        self.net.train()
        out = self.net(x)
        acc = float("nan")
        if a.method == "simclr":
            loss = contrastive(out, a.tau, a.loss == "dcl")
        else:
            t = torch.from_numpy(b.targets).to(self.device, non_blocking=True)
            loss = F.cross_entropy(out, t)
            acc = (out.argmax(dim=1) == t).float().mean().item()
        lv = loss.item()
        if not math.isfinite(lv):
            return lv, acc
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.opt_steps += 1
        return lv, acc

    # -- between steps
    def training_epoch(self):
        e, known = self.feed.call(wire.Epochs.current)
        if known:
            return e
        if self.dataset_size:
            return self.images_seen // self.dataset_size
        return self.last_batch_epoch

    def current_epoch(self):
        if self.dataset_size:
            return self.images_seen / self.dataset_size
        return float(self.last_batch_epoch)

    def images_per_s(self):
        return self.timed_steps * self.a.batch / self.sum_period if self.sum_period > 0 else 0.0

    def wait_share(self):
        return self.sum_wait / self.sum_period if self.sum_period > 0 else 0.0

    def elapsed(self):
        return self.train_seconds_before + (time.monotonic() - self.run_start if self.run_start else 0.0)

    def write_epoch_records(self, all_open):
        while True:
            r = self.feed.call(wire.Epochs.next_record, all_open)
            if r is None:
                return
            j = {"step": self.step, "time": round(self.elapsed(), 6), "record": "epoch", "epoch": r["epoch"],
                 "distinct": r["distinct"], "duplicates": r["duplicates"], "expected": r["expected"],
                 "complete": r["complete"]}
            if self.a.method == "supervised":
                j["skipped"] = r["skipped"]
            self.metrics.write(json.dumps(j, separators=(",", ":")) + "\n")
            if not self.a.quiet or not r["complete"]:
                log("epoch %d %s: %d distinct samples trained%s, %d duplicate(s) dropped"
                    % (r["epoch"], "complete" if r["complete"] else "open at the end", r["distinct"],
                       "" if r["expected"] else " (its end was not seen)", r["duplicates"]))

    def housekeeping(self, now):
        if self.pub:
            self.pub.acks(self.feed.take_duplicates())
        else:
            self.feed.take_duplicates()
        self.write_epoch_records(False)
        st = self.feed.stats()
        if not self.dataset_size and st["epoch_count"]:
            self.dataset_size = st["epoch_count"]
            if not self.total_steps:
                self.total_steps = self.steps_for(self.dataset_size)
            if self.a.minutes:
                log("the loader's epoch has %d images" % self.dataset_size)
            else:
                log("the loader's epoch has %d images: %d steps in all" % (self.dataset_size, self.total_steps))
        if st["dropped"] > self.drops_logged and now - self.last_drop_log >= DROP_LOG_S:
            log("dropped %d message(s) so far; last: %s" % (st["dropped"], st["last_error"]))
            self.drops_logged, self.last_drop_log = st["dropped"], now
        if not self.pub:
            return
        self.pub.hear_beats(now)
        if now >= self.next_heartbeat:
            self.pub.control("heartbeat", self.training_epoch(), self.step)
            have = self.feed.call(wire.Epochs.have)
            if have is not None:
                self.pub.have(have[0], self.step, have[1])
            self.pub.stats({"step": self.step, "total_steps": self.total_steps,
                            "loss": self.last_loss if math.isfinite(self.last_loss) else 0.0,
                            "images_per_s": self.images_per_s(), "data_wait": self.wait_share(),
                            "viewbatches": st["viewbatches"], "dropped": st["dropped"],
                            "duplicates": st["duplicates"], "skipped": st["skipped"]})
            self.next_heartbeat = now + HEARTBEAT_S

    # -- checkpoints
    def save(self):
        a = self.a
        path = ckpt_path(self.out, self.step)
        epoch = int(math.floor(self.current_epoch()))
        sslnet.save_checkpoint(path, self.net, self.opt, self.opt_steps, a.method, self.step, epoch)
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "method": a.method, "arch": a.arch,
                 "width": a.width, "batch": a.batch, "optimizer": "sgd", "lr": a.lr,
                 "weight_decay": a.weight_decay, "momentum": a.momentum, "tau": a.tau, "loss": a.loss,
                 "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                 "epochs": float(a.epochs or 0.0), "minutes": float(a.minutes or 0.0), "dataset_size": str(self.dataset_size), "step": self.step,
                 "images_seen": str(self.images_seen), "seed": str(a.seed), "rng": "%016x" % a.seed,
                 "train_seconds": self.elapsed(),
                 "epoch_sets": self.feed.call(wire.Epochs.to_json)}
        write_atomic(state_path(path), json.dumps(state, indent=1) + "\n")
        point_latest(self.out, path)
        prune(self.out, a.keep, self.step)
        self.last_ckpt = os.path.realpath(path)
        self.last_ckpt_step = self.step
        self.tell_evaluator(epoch)

    def tell_evaluator(self, epoch):
        if self.eval is None:
            return
        if not isinstance(self.net, sslnet.Net):
            if not self.told_no_eval:
                log("%s checkpoints are not announced to the evaluator: the C evaluator reads network "
                    "descriptions only (resnet-mini, conv4, a description file)" % self.a.arch)
                self.told_no_eval = True
            return
        arch = self.net.desc if len(self.net.desc.encode()) <= MAX_TEXT else self.a.arch
        msg = dict(wire.header("checkpoint"), step=self.step, epoch=epoch, method=self.a.method, arch=arch,
                   path=self.last_ckpt)
        try:
            self.eval.send(msgpack.packb(msg, use_bin_type=True), zmq.DONTWAIT)
        except zmq.Again:
            pass     # newest wins; the file is on disk anyway

    def plan_budget(self):
        """A time budget: the total that ends training when the time is up, at the rate of this process's
        steps so far; the default warm-up is 5% of it, growing with it until it is over."""
        spent = time.monotonic() - self.run_start
        rate = (self.step - self.first_step) / spent if spent > 0 else 0.0
        left = self.a.minutes * 60.0 - self.elapsed()
        self.total_steps = max(1, self.step + (int(math.floor(left * rate)) if left > 0 else 0))
        if self.warmup_auto and (self.warmup_steps <= 0 or self.step <= self.warmup_steps):
            self.warmup_steps = max(self.warmup_steps, round(WARMUP_SHARE * self.total_steps))

    # -- the run
    def train(self):
        a = self.a
        wait, period_start = 0.0, 0.0
        self.next_heartbeat = 0.0
        self.drops_logged, self.last_drop_log = 0, 0.0
        last_wait_log = last_progress = time.monotonic()
        while True:
            if self.stop_signals:
                return "signal"
            if self.total_steps and self.step >= self.total_steps:
                return "done"
            t0 = time.monotonic()
            b = self.feed.take(TAKE_SLICE_S)
            now = time.monotonic()
            wait += now - t0
            self.housekeeping(now)
            if b is None:
                st = self.feed.stats()
                if st["end_of_stream"] and now - st["last_data"] >= EOS_IDLE_S:
                    return "end of stream"
                if self.net is None and now - last_wait_log >= WAIT_LOG_S:
                    log("waiting for ViewBatches on %s (%d received, %d dropped)" % (a.bind, st["viewbatches"],
                                                                                     st["dropped"]))
                    last_wait_log = now
                continue
            if self.net is None:
                if not self.build_model(b):
                    return "failed"
                self.run_start = period_start = time.monotonic()
                self.first_step = self.step
                wait = 0.0
            if a.minutes and not self.total_steps:
                lr = 0.0       # a time budget's first step: no rate known yet
            else:
                lr = lr_schedule(a.lr, self.step, self.warmup_steps, self.total_steps or sys.maxsize)
            loss, acc = self.train_step(b, lr)
            self.last_batch_epoch = int(b.epoch.max())
            if not math.isfinite(loss):
                log("the loss is %f at step %d (lr %g): training diverged; nothing saved after step %d\n"
                    "HINT: lower --lr" % (loss, self.step + 1, lr, self.last_ckpt_step))
                return "diverged"
            self.feed.trained(b)
            if self.pub:
                self.pub.acks(zip(b.epoch.tolist(), b.index.tolist()))
            self.step += 1
            self.images_seen += a.batch
            if a.minutes:
                self.plan_budget()
            self.last_loss = loss
            if math.isfinite(acc):
                self.acc = (self.acc + [acc])[-ACC_WINDOW:]
            now = time.monotonic()
            period = now - period_start
            self.sum_period += period
            self.sum_wait += wait
            self.timed_steps += 1
            m = {"step": self.step, "epoch": round(self.current_epoch(), 6), "loss": loss, "lr": lr,
                 "images_per_s": a.batch / period if period > 0 else 0.0,
                 "data_wait": wait / period if period > 0 else 0.0, "time": round(self.elapsed(), 6)}
            if math.isfinite(acc):
                m["accuracy"] = acc
            self.metrics.write(json.dumps(m, separators=(",", ":")) + "\n")
            if not a.quiet and (now - last_progress >= PROGRESS_S or self.step == self.total_steps):
                total = "/%d" % self.total_steps if self.total_steps else ""
                log("step %d%s, epoch %.2f, loss %.4f, %.1f images/s, data wait %.1f%%"
                    % (self.step, total, self.current_epoch(), loss, self.images_per_s(), 100 * self.wait_share()))
                last_progress = now
            if self.step % a.ckpt_every == 0 or self.step == self.total_steps:
                self.save()
            period_start = time.monotonic()
            wait = 0.0

    def run(self):
        self.setup()
        os.makedirs(self.out, exist_ok=True)
        stale = clean_tmp(self.out)
        if stale:
            log("removed %d temporary file(s) that a killed trainer left in %s" % (stale, self.out))
        kept = self.restored.record_out if self.restored is not None else None
        self.metrics = open_metrics(self.out, self.step if self.resume_path else None, kept)
        self.open_sockets()
        log("listening on %s for ViewBatches, control on %s, evaluator %s, run folder %s"
            % (self.a.bind, self.a.control, self.a.evaluator, self.out))
        start = time.monotonic()
        why = self.train()
        if why == "end of stream" and self.net is None:
            log("the stream ended before a full batch of %d images arrived" % self.a.batch)
            why = "failed"
        elif why == "end of stream":
            log("the stream ended at step %d%s" % (self.step, " before the planned total"
                                                   if self.total_steps and self.step < self.total_steps else ""))
        rc = EXIT_OK if why in ("done", "signal", "end of stream") else EXIT_RUNTIME
        if self.net is not None and why != "diverged" and self.step > self.last_ckpt_step:
            self.save()
        if self.net is not None:
            if self.pub:
                self.pub.acks(self.feed.take_duplicates())
            self.write_epoch_records(True)
        if self.a.minutes and self.net is not None:
            log("time budget: %d steps in %.1f of the %g minutes" % (self.step, self.elapsed() / 60, self.a.minutes))
        self.summary(why, time.monotonic() - (self.run_start or start))
        if self.pub:
            self.publish_stop()
        self.feed.shutdown()
        self.metrics.close()
        if self.pub:
            self.pub.close()
        if self.eval is not None:
            self.eval.close()
        self.ctx.term()
        return rc

    def publish_stop(self):
        """STOP, five times (PUB/SUB may lose the first ones), then again
        whenever a loader or augmenter still beats: one that connected late
        (after a short run's first STOPs) hears a later one."""
        for _ in range(STOP_REPEATS):
            self.pub.control("stop", self.training_epoch(), self.step)
            time.sleep(STOP_INTERVAL_S)
        end = quiet_since = time.monotonic()
        end += STOP_LINGER_S
        while time.monotonic() < end:
            time.sleep(STOP_INTERVAL_S)
            now = time.monotonic()
            if self.pub.hear_beats(now):
                self.pub.control("stop", self.training_epoch(), self.step)
                quiet_since = now
            elif now - quiet_since >= BEAT_GAP_S:
                break

    def summary(self, why, seconds):
        st = self.feed.stats()
        acc = sum(self.acc) / len(self.acc) if self.acc else None
        log("%s after %d steps (%d in this process, %.1f s): %.1f images/s, data wait %.1f%% of step time, "
            "%d ViewBatches, %d dropped, %d duplicate samples; last loss %.4f%s; checkpoint %s"
            % (why, self.step, self.timed_steps, seconds, self.images_per_s(), 100 * self.wait_share(),
               st["viewbatches"], st["dropped"], st["duplicates"], self.last_loss,
               ", train accuracy %.1f%%" % (100 * acc) if acc is not None else "", self.last_ckpt or "none"))
        j = {"end": why, "step": self.step, "steps_this_run": self.timed_steps,
             "loss": self.last_loss if self.timed_steps else -1.0, "images_per_s": self.images_per_s(),
             "data_wait": self.wait_share(), "viewbatches": st["viewbatches"], "dropped": st["dropped"],
             "checkpoint": self.last_ckpt, "device": str(self.device)}
        if acc is not None:
            j["train_accuracy"] = acc
        print(json.dumps(j), flush=True)


def main(argv):
    a = parse_args(argv)
    t = Trainer(a)

    def on_signal(signum, frame):
        t.stop_signals += 1
        if t.stop_signals > 1:
            os._exit(EXIT_RUNTIME)     # a second signal: at once
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return t.run()
    except Usage as e:
        print("torch_trainer: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    except zmq.ZMQError as e:
        print("torch_trainer: %s\nHINT: is another trainer bound to %s or %s?" % (e, a.bind, a.control),
              file=sys.stderr)
        return EXIT_RUNTIME
    except OSError as e:
        print("torch_trainer: %s" % e, file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
