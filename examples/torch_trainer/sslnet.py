"""Networks and checkpoints of the PyTorch trainer.

- Net: a torch module built from the project's network description text
  (nn/README.md), whose state_dict names and tensor layouts are those of the
  C network (encoder.layers.N.*, head.layers.N.*), so that its checkpoints
  load into the C evaluator and C checkpoints load into it.
- TorchvisionNet: any torchvision classification model by name as the
  encoder (its classifier removed), with the method's head.
- preset_desc: the description text nn_preset_desc() (nn/net.c) writes.
- save_checkpoint / read_safetensors: the checkpoint format of nn/ckpt.h
  (safetensors, F32 little-endian, __metadata__ with the description and a
  crc32 of the data section), written atomically.
"""
import json
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as F

DESC_FORMAT, DESC_VERSION = "nn", 1
CKPT_FORMAT, CKPT_VERSION = "sslcpu-nn", 1      # nn/ckpt.h NN_CKPT_FORMAT / NN_CKPT_VERSION
TV_CKPT_FORMAT = "sslpipe-torchvision"         # torchvision encoders: not readable by the C tools
BN_EPS, BN_MOMENTUM = 1e-5, 0.1                 # as nn/layers.c
PROJ_DIM, ROT_CLASSES = 128, 4                  # nn/net.h NN_PROJ_DIM, NN_ROT_CLASSES
PRESETS = ("resnet-mini", "conv4")
TORCHVISION_PREFIX = "torchvision:"


class DescError(ValueError):
    """A network description that cannot be built; the message names the line."""


# ---------------------------------------------------------------- descriptions

def preset_desc(net, width, head, c, h, w):
    """The description text of a preset, byte for byte as nn_preset_desc()."""
    cbr = lambda n: "conv out=%d k=3 s=1 p=1 bias=0\nbn\nrelu\n" % n  # noqa: E731
    s = "%s %d\n# preset %s width %d head %s\ninput %d %d %d\nencoder\n" % (
        DESC_FORMAT, DESC_VERSION, net, width, head, c, h, w)
    if net == "resnet-mini":
        s += cbr(width) + cbr(2 * width) + "maxpool k=2 s=2\nres\n" + cbr(2 * width) + cbr(2 * width) + "end\n"
        s += cbr(4 * width) + "maxpool k=2 s=2\n" + cbr(8 * width) + "maxpool k=2 s=2\nres\n"
        s += cbr(8 * width) + cbr(8 * width) + "end\ngap\n"
    elif net == "conv4":
        for i in range(4):
            s += cbr(width << i) + "maxpool k=2 s=2\n"
        s += "gap\n"
    else:
        raise DescError("unknown network preset '%s' (expected resnet-mini or conv4)" % net)
    if head.startswith("classifier"):
        _, _, n = head.partition(":")
        s += "head\nlinear out=%d bias=1\n" % (int(n) if n else 10)
    elif head == "simclr":
        s += "head\nlinear out=%d bias=0\nbn\nrelu\nlinear out=%d bias=1\n" % (8 * width, PROJ_DIM)
    elif head == "rotation":
        s += "head\nlinear out=%d bias=1\n" % ROT_CLASSES
    elif head != "none":
        raise DescError("unknown head '%s'" % head)
    return s


class _Res(tnn.Module):
    """Start of a residual block: remembers its input (no parameters)."""


class _End(tnn.Module):
    """End of a residual block: adds the input remembered by its _Res."""


class _Gap(tnn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class _L2Norm(tnn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


class _Section(tnn.Module):
    """encoder or head: a list of layers, residual markers included, so that
    parameter names count the layers as the C description does."""

    def __init__(self):
        super().__init__()
        self.layers = tnn.ModuleList()

    def forward(self, x):
        saved = []
        for m in self.layers:
            if isinstance(m, _Res):
                saved.append(x)
            elif isinstance(m, _End):
                x = x + saved.pop()
            else:
                x = m(x)
        return x


_KEYS = {"conv": ("out", "k", "s", "p", "bias"), "maxpool": ("k", "s"), "linear": ("out", "bias")}


def _options(kind, words, line):
    opts = {}
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or k not in _KEYS.get(kind, ()):
            raise DescError("line %d: %s: unknown key '%s' (keys: %s)" % (line, kind, k,
                                                                        " ".join(_KEYS.get(kind, ())) or "none"))
        try:
            opts[k] = int(v)
        except ValueError:
            raise DescError("line %d: %s: %s=%s is not a whole number" % (line, kind, k, v)) from None
    return opts


class Net(tnn.Module):
    """The torch twin of a C network description."""

    def __init__(self, desc):
        super().__init__()
        self.desc = desc
        self.encoder = _Section()
        self.head = None
        self.input_shape = None
        shape, cur, depth, resshape = None, None, 0, []
        for line, raw in enumerate(desc.splitlines(), 1):
            words = raw.split("#")[0].split()
            if not words:
                continue
            kind = words[0]
            if kind == DESC_FORMAT:
                if words[1:] != [str(DESC_VERSION)]:
                    raise DescError("line %d: description version %s, this trainer reads %d"
                                    % (line, " ".join(words[1:]), DESC_VERSION))
                continue
            if kind == "input":
                shape = [int(w) for w in words[1:4]]
                self.input_shape = tuple(shape)
                continue
            if kind in ("encoder", "head"):
                cur = _Section()
                if kind == "encoder":
                    self.encoder = cur
                else:
                    self.head = cur
                continue
            if cur is None or shape is None:
                raise DescError("line %d: '%s' before 'input' and 'encoder'" % (line, kind))
            o = _options(kind, words[1:], line)
            if kind == "conv":
                k = o.get("k", 3)
                s, p = o.get("s", 1), o.get("p", k // 2)
                m = tnn.Conv2d(shape[0], o["out"], k, stride=s, padding=p, bias=bool(o.get("bias", 0)))
                shape = [o["out"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
            elif kind == "bn":
                bn = tnn.BatchNorm2d if len(shape) == 3 else tnn.BatchNorm1d
                m = bn(shape[0], eps=BN_EPS, momentum=BN_MOMENTUM)
            elif kind == "relu":
                m = tnn.ReLU(inplace=True)
            elif kind == "maxpool":
                k = o.get("k", 2)
                s = o.get("s", k)
                m = tnn.MaxPool2d(k, stride=s)
                shape = [shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1]
            elif kind == "gap":
                m = _Gap()
                shape = [shape[0]]
            elif kind == "flatten":
                m = tnn.Flatten()
                shape = [int(np.prod(shape))]
            elif kind == "linear":
                m = tnn.Linear(shape[0], o["out"], bias=bool(o.get("bias", 1)))
                shape = [o["out"]]
            elif kind == "l2norm":
                m = _L2Norm()
            elif kind == "res":
                m = _Res()
                resshape.append((line, list(shape)))
                depth += 1
            elif kind == "end":
                if not resshape:
                    raise DescError("line %d: 'end' without 'res'" % line)
                start, before = resshape.pop()
                if before != shape:
                    raise DescError("line %d: residual block from line %d changes the shape %s -> %s"
                                    % (line, start, before, shape))
                m = _End()
            else:
                raise DescError("line %d: unknown layer '%s'" % (line, kind))
            if any(d < 1 for d in shape):
                raise DescError("line %d: %s leaves an empty shape %s" % (line, kind, shape))
            cur.layers.append(m)
        if self.input_shape is None:
            raise DescError("the description has no 'input C H W' line")
        if resshape:
            raise DescError("line %d: 'res' without 'end'" % resshape[-1][0])
        self.out_dim = shape[0]

    def features(self, x):
        return self.encoder(x)

    def forward(self, x):
        f = self.encoder(x)
        return self.head(f) if self.head is not None else f


class TorchvisionNet(tnn.Module):
    """A torchvision model as the encoder (its last classifier layer replaced
    by the identity), and the method's head on its features."""

    def __init__(self, name, head, in_shape):
        super().__init__()
        try:
            import torchvision
        except ImportError:
            raise DescError("--arch %s%s needs torchvision (Debian: python3-torchvision)"
                            % (TORCHVISION_PREFIX, name)) from None
        ctor = getattr(torchvision.models, name, None)
        if ctor is None or not callable(ctor) or name.startswith("_"):
            raise DescError("torchvision has no model '%s' (e.g. resnet18, resnet50, mobilenet_v3_small)" % name)
        self.desc = TORCHVISION_PREFIX + name
        self.input_shape = tuple(in_shape)
        enc = ctor()
        feat = None
        for attr in ("fc", "classifier", "head", "heads"):
            last = getattr(enc, attr, None)
            if isinstance(last, tnn.Linear):
                feat = last.in_features
                setattr(enc, attr, tnn.Identity())
                break
            if isinstance(last, tnn.Sequential) and isinstance(last[-1], tnn.Linear):
                feat = last[-1].in_features
                last[-1] = tnn.Identity()
                break
        if feat is None:
            raise DescError("torchvision model '%s': cannot find its final linear layer to remove" % name)
        self.encoder = enc
        self.gray = in_shape[0] == 1
        if head == "simclr":
            self.head = tnn.Sequential(tnn.Linear(feat, feat, bias=False),
                                       tnn.BatchNorm1d(feat, eps=BN_EPS, momentum=BN_MOMENTUM),
                                       tnn.ReLU(inplace=True), tnn.Linear(feat, PROJ_DIM))
        elif head == "rotation":
            self.head = tnn.Linear(feat, ROT_CLASSES)
        elif head.startswith("classifier"):
            _, _, n = head.partition(":")
            self.head = tnn.Linear(feat, int(n) if n else 10)
        else:
            self.head = None
        self.out_dim = self.head.out_features if isinstance(self.head, tnn.Linear) else (
            PROJ_DIM if self.head is not None else feat)

    def features(self, x):
        if self.gray:
            x = x.expand(-1, 3, -1, -1)   # torchvision models take RGB
        return self.encoder(x)

    def forward(self, x):
        f = self.features(x)
        return self.head(f) if self.head is not None else f


def build(arch, width, head, in_shape):
    """The network for --arch: a preset, a description file, torchvision:NAME."""
    if arch.startswith(TORCHVISION_PREFIX):
        return TorchvisionNet(arch[len(TORCHVISION_PREFIX):], head, in_shape)
    if arch in PRESETS:
        return Net(preset_desc(arch, width, head, *in_shape))
    try:
        with open(arch) as f:
            return Net(f.read())
    except OSError as e:
        raise DescError("--arch %s: not a preset (%s), not torchvision:NAME and not a readable file (%s)"
                        % (arch, ", ".join(PRESETS), e.strerror)) from None


def state_tensors(net):
    """The network's tensors as the C checkpoint names them: the state_dict
    without num_batches_tracked."""
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


# ---------------------------------------------------------------- safetensors

def read_safetensors(path):
    """(tensors: name -> float32 numpy array, metadata dict); ValueError with
    the reason on a file that is not a valid F32 safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: %d bytes, too short for a safetensors file" % (path, len(blob)))
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise ValueError("%s: header length %d does not fit in the file (truncated?)" % (path, hlen))
    try:
        header = json.loads(blob[8:8 + hlen])
    except ValueError as e:
        raise ValueError("%s: header is not JSON (%s)" % (path, e)) from None
    meta = header.pop("__metadata__", {})
    data = memoryview(blob)[8 + hlen:]
    crc = "crc32:%08x" % zlib.crc32(data)
    if "checksum" in meta and meta["checksum"] != crc:
        raise ValueError("%s: checksum mismatch: metadata says %s, the data has %s: the file is corrupt"
                         % (path, meta["checksum"], crc))
    out = {}
    for name, info in header.items():
        if info.get("dtype") != "F32":
            raise ValueError("%s: tensor '%s' has dtype %s; only F32 is supported" % (path, name, info.get("dtype")))
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors, metadata):
    """Writes atomically: PATH.tmp.PID, fsync, rename (nn/safetensors.c).
    metadata gets the crc32 of the data section as "checksum"."""
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        chunks.append(a.tobytes())
        off += a.nbytes
    crc = 0
    for c in chunks:
        crc = zlib.crc32(c, crc)
    header["__metadata__"] = dict(metadata, checksum="crc32:%08x" % crc)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def optimizer_config(opt):
    """optimizer_config metadata as nn_ckpt_save writes it (SGD)."""
    g = opt.param_groups[0]
    return json.dumps({"momentum": g["momentum"], "nesterov": bool(g["nesterov"]),
                       "weight_decay": g["weight_decay"], "decay_all": True, "beta1": 0.9,
                       "beta2": 0.999, "eps": 1e-8, "trust_coef": 0.001}, separators=(",", ":"))


def save_checkpoint(path, net, opt, opt_steps, method, step, epoch):
    """Model (and SGD momentum as optimizer.<name>.momentum_buffer) with the
    metadata the C evaluator and nntool read (nn/ckpt.h)."""
    tensors = {k: v.detach().float().cpu().numpy() for k, v in state_tensors(net).items()}
    names = {id(p): n for n, p in net.named_parameters()}
    if opt is not None:
        for group in opt.param_groups:
            for p in group["params"]:
                buf = opt.state.get(p, {}).get("momentum_buffer")
                buf = torch.zeros_like(p) if buf is None else buf
                tensors["optimizer.%s.momentum_buffer" % names[id(p)]] = buf.detach().float().cpu().numpy()
    described = isinstance(net, Net)
    meta = {"format": "pt", "nn_format": CKPT_FORMAT if described else TV_CKPT_FORMAT,
            "nn_version": str(CKPT_VERSION), "nn_desc": net.desc, "method": method,
            "step": str(step), "epoch": str(epoch)}
    if not described:
        meta["input"] = " ".join(map(str, net.input_shape))
    if opt is not None:
        meta.update(optimizer="sgd", optimizer_steps=str(opt_steps), optimizer_config=optimizer_config(opt))
    write_safetensors(path, tensors, meta)


def load_checkpoint(path, net, opt, device):
    """Loads a checkpoint of this trainer or of the C trainer into net (and
    the SGD momentum into opt when the file has it). Returns the metadata;
    ValueError naming what does not fit."""
    tensors, meta = read_safetensors(path)
    if meta.get("nn_desc") != net.desc:
        raise ValueError("%s: its network differs from this one's" % path)
    state = state_tensors(net)
    for name, t in state.items():
        if name not in tensors:
            raise ValueError("%s: tensor '%s' missing" % (path, name))
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise ValueError("%s: tensor '%s' has shape %s in the file, %s in the network"
                             % (path, name, tuple(tensors[name].shape), tuple(t.shape)))
    unknown = [n for n in tensors if n not in state and not n.startswith("optimizer.")]
    if unknown:
        raise ValueError("%s: unexpected tensor '%s' (not a parameter of this network)" % (path, unknown[0]))
    with torch.no_grad():
        for name, t in state.items():
            t.copy_(torch.from_numpy(tensors[name]))
    if opt is not None and meta.get("optimizer") == "sgd":
        for name, p in net.named_parameters():
            buf = tensors.get("optimizer.%s.momentum_buffer" % name)
            if buf is not None:
                opt.state[p]["momentum_buffer"] = torch.from_numpy(buf).to(device)
    return meta


def read_meta(path):
    """The checkpoint's metadata only (for resuming: method, description)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("%s: too short for a safetensors file" % path)
        (hlen,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(hlen))
        except ValueError as e:
            raise ValueError("%s: header is not JSON (%s)" % (path, e)) from None
    meta = header.get("__metadata__", {})
    if meta.get("nn_format") not in (CKPT_FORMAT, TV_CKPT_FORMAT) or "nn_desc" not in meta:
        raise ValueError("%s: not a checkpoint of the C or PyTorch trainer (metadata nn_format is %s)"
                         % (path, meta.get("nn_format", "missing")))
    return meta
