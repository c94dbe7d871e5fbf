#!/usr/bin/python3
"""Regenerates the corpus of bad and unusual dataset files under tests/data/bad
(run with Debian's /usr/bin/python3: it needs PIL and numpy). The files are
committed; tests/it_bad_input.sh reads them and knows what each one should
give. Deterministic: running it twice writes the same bytes.

  folder/good/       plain images the loader must send unchanged
  folder/converted/  images the loader must convert (16-bit, CMYK, alpha, animation)
  folder/broken/     files the loader must skip with a reason (corrupt, too_large)
  idx-*/             IDX sets whose headers and contents disagree (refused, exit 2)
  cifar-mixed/       one good CIFAR-10 batch and one of the wrong length (that one skipped)
  cifar-short/       only a CIFAR-10 batch of the wrong length (refused, exit 2)
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
BOMB_SIDE = 30000        # 900 megapixels, declared in the PNG header
SIDE = 24                # side of the ordinary test images


def out(rel, data):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def saved(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def gradient(channels, dtype=np.uint8, scale=1):
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    planes = [(x * 10 + y * 3 + 40 * c) % 256 for c in range(channels)]
    a = np.stack(planes, axis=-1).astype(np.uint32) * scale
    return a.astype(dtype) if channels > 1 else a[..., 0].astype(dtype)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb():
    """A 1-bit grayscale PNG of BOMB_SIDE x BOMB_SIDE zeros: about 110 KB on
    disk, 900 megapixels (at least 900 MB as 8-bit) once decoded."""
    ihdr = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (BOMB_SIDE + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(BOMB_SIDE)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def idx_images(count, rows, cols, present):
    hdr = struct.pack(">BBBBIII", 0, 0, 8, 3, count, rows, cols)
    return hdr + bytes((i * 7) % 256 for i in range(present * rows * cols))


def idx_labels(count, present):
    return struct.pack(">BBBBI", 0, 0, 8, 1, count) + bytes(i % 10 for i in range(present))


def cifar_batch(records, extra=0):
    rng = np.random.default_rng(5)
    recs = [bytes([i % 10]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for i in range(records)]
    return b"".join(recs) + bytes(extra)


def main():
    rgb = Image.fromarray(gradient(3), "RGB")
    gray = Image.fromarray(gradient(1), "L")

    # good: decode as they are
    out("folder/good/rgb.png", saved(rgb, "PNG"))
    out("folder/good/gray.png", saved(gray, "PNG"))
    out("folder/good/baseline.jpg", saved(rgb, "JPEG", quality=90))
    out("folder/good/png-named.jpg", saved(rgb, "PNG"))          # wrong extension: decoded by content

    # converted: reach the requested channels, with a note on what was dropped
    out("folder/converted/gray16.png", saved(Image.fromarray(gradient(1, np.uint16, 257), "I;16"), "PNG"))
    rgb16 = gradient(3, np.uint16, 257)                           # PIL cannot write it: build it by hand
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(SIDE))
    out("folder/converted/rgb16.png", b"\x89PNG\r\n\x1a\n" +
        png_chunk(b"IHDR", struct.pack(">IIBBBBB", SIDE, SIDE, 16, 2, 0, 0, 0)) +
        png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))
    out("folder/converted/cmyk.jpg", saved(rgb.convert("CMYK"), "JPEG", quality=90))
    la = Image.merge("LA", (gray, Image.fromarray(gradient(1)[::-1].copy(), "L")))
    out("folder/converted/gray-alpha.png", saved(la, "PNG"))
    out("folder/converted/rgba.png", saved(rgb.convert("RGBA"), "PNG"))
    frames = [Image.fromarray(np.roll(gradient(3), 5 * k, axis=1), "RGB").convert("P", palette=Image.ADAPTIVE)
              for k in range(3)]
    out("folder/converted/animated.gif", saved(frames[0], "GIF", save_all=True, append_images=frames[1:],
                                               duration=100, loop=0))

    # broken: skipped with a reason
    jpg = saved(rgb, "JPEG", quality=90)
    png = saved(rgb, "PNG")
    out("folder/broken/truncated.jpg", jpg[: len(jpg) // 2])
    out("folder/broken/truncated.png", png[: len(png) // 2])
    out("folder/broken/header-only.png", png[:33])                 # signature + IHDR, no data
    out("folder/broken/zero-bytes.png", b"")
    out("folder/broken/text.jpg", b"this is a text file, not a JPEG\n" * 4)
    out("folder/broken/bomb.png", png_bomb())
    out("folder/broken/wide.png", saved(Image.new("L", (20000, 1), 7), "PNG"))   # side above a Sample's 16384

    # IDX: header and content disagree (each set alone: refused with exit 2)
    out("idx-short/train-images-idx3-ubyte", idx_images(100, 28, 28, 10))
    out("idx-short/train-labels-idx1-ubyte", idx_labels(100, 100))
    out("idx-labels/train-images-idx3-ubyte", idx_images(10, 28, 28, 10))
    out("idx-labels/train-labels-idx1-ubyte", idx_labels(12, 12))
    out("idx-huge/train-images-idx3-ubyte", idx_images(0xFFFFFFFF, 65535, 65535, 0))   # 2^64 bytes declared
    out("idx-huge/train-labels-idx1-ubyte", idx_labels(0xFFFFFFFF, 3))

    # CIFAR-10: a batch of the wrong length beside a good one, and alone
    out("cifar-mixed/data_batch_1.bin", cifar_batch(6))
    out("cifar-mixed/data_batch_2.bin", cifar_batch(4, extra=100))
    out("cifar-short/data_batch_1.bin", cifar_batch(2)[:5000])


if __name__ == "__main__":
    sys.exit(main())
