"""The PyTorch twin of nn/net.c: builds a torch module from an nn description
text (see nn/net.h) whose state_dict names match the C parameter table, and
reads/writes safetensors files with json + numpy only.

Used by tests/nn_reference.py, tests/nn_interop.py and bench/nn_torch_bench.py.
"""
import json
import struct

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as F

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


class Res(tnn.Module):
    """Marker: start of a residual block (no parameters)."""


class End(tnn.Module):
    """Marker: end of a residual block: adds the block's input."""


class Section(tnn.Module):
    def __init__(self):
        super().__init__()
        self.layers = tnn.ModuleList()

    def forward(self, x):
        stack = []
        for m in self.layers:
            if isinstance(m, Res):
                stack.append(x)
            elif isinstance(m, End):
                x = x + stack.pop()
            else:
                x = m(x)
        return x


class L2Norm(tnn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


class Gap(tnn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class Net(tnn.Module):
    def __init__(self, desc):
        super().__init__()
        self.desc = desc
        self.encoder = Section()
        self.head = None
        shape = None
        cur = None
        for raw in desc.splitlines():
            words = raw.split("#")[0].split()
            if not words:
                continue
            kind, opts = words[0], {}
            for w in words[1:]:
                k, _, v = w.partition("=")
                opts[k] = int(v) if v else v
            if kind == "nn":
                assert int(words[1]) == 1, "description version"
                continue
            if kind == "input":
                shape = [int(w) for w in words[1:4]]
                self.input_shape = tuple(shape)
                continue
            if kind == "encoder":
                cur = self.encoder
                continue
            if kind == "head":
                self.head = Section()
                cur = self.head
                continue
            if kind == "conv":
                k = opts.get("k", 3)
                m = tnn.Conv2d(shape[0], opts["out"], k, stride=opts.get("s", 1),
                               padding=opts.get("p", k // 2), bias=bool(opts.get("bias", 0)))
                with torch.no_grad():
                    shape = list(m(torch.zeros(1, *shape)).shape[1:])
            elif kind == "bn":
                m = (tnn.BatchNorm2d if len(shape) == 3 else tnn.BatchNorm1d)(
                    shape[0], eps=BN_EPS, momentum=BN_MOMENTUM)
            elif kind == "relu":
                m = tnn.ReLU()
            elif kind == "maxpool":
                k = opts.get("k", 2)
                m = tnn.MaxPool2d(k, stride=opts.get("s", k))
                shape = [shape[0], (shape[1] - k) // opts.get("s", k) + 1,
                         (shape[2] - k) // opts.get("s", k) + 1]
            elif kind == "gap":
                m = Gap()
                shape = [shape[0]]
            elif kind == "flatten":
                m = tnn.Flatten()
                shape = [int(np.prod(shape))]
            elif kind == "linear":
                m = tnn.Linear(shape[0], opts["out"], bias=bool(opts.get("bias", 1)))
                shape = [opts["out"]]
            elif kind == "l2norm":
                m = L2Norm()
            elif kind == "res":
                m = Res()
            elif kind == "end":
                m = End()
            else:
                raise ValueError("unknown layer %r" % kind)
            cur.layers.append(m)

    def features(self, x):
        return self.encoder(x)

    def forward(self, x):
        f = self.encoder(x)
        return self.head(f) if self.head is not None else f


def ntxent(z, tau):
    """NT-Xent as SimCLR: rows 0..N-1 first views, N..2N-1 second views."""
    n2 = z.shape[0]
    zn = F.normalize(z, dim=1)
    s = zn @ zn.t() / tau
    s = s.masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    pos = (torch.arange(n2) + n2 // 2) % n2
    return F.cross_entropy(s, pos)


def net_state(net):
    """state_dict without num_batches_tracked (the C side does not keep it)."""
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def read_safetensors(path):
    """Returns (tensors: dict name -> np.ndarray float32, metadata dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    data = blob[8 + hlen:]
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        chunks.append(a.tobytes())
        off += a.nbytes
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def preset_desc(net, width, head, in_c=3, in_h=32, in_w=32):
    """The same text as nn_preset_desc() in nn/net.c."""
    cbr = lambda w: "conv out=%d k=3 s=1 p=1 bias=0\nbn\nrelu\n" % w
    s = "nn 1\n# preset %s width %d head %s\ninput %d %d %d\nencoder\n" % (
        net, width, head, in_c, in_h, in_w)
    w = width
    if net == "resnet-mini":
        s += cbr(w) + cbr(2 * w) + "maxpool k=2 s=2\nres\n" + cbr(2 * w) + cbr(2 * w) + "end\n"
        s += cbr(4 * w) + "maxpool k=2 s=2\n" + cbr(8 * w) + "maxpool k=2 s=2\nres\n"
        s += cbr(8 * w) + cbr(8 * w) + "end\ngap\n"
    elif net == "conv4":
        for i in range(4):
            s += cbr(w << i) + "maxpool k=2 s=2\n"
        s += "gap\n"
    else:
        raise ValueError(net)
    if head == "simclr":
        s += "head\nlinear out=%d bias=0\nbn\nrelu\nlinear out=128 bias=1\n" % (8 * w)
    elif head == "rotation":
        s += "head\nlinear out=4 bias=1\n"
    return s
