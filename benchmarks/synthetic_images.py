"""Synthetic image folders for the data-scale bench, fast enough for 200,000 files.

A pool of pictures is drawn and encoded once per class (100 per class: mixed sizes 48..320 px a
side and mixed modes and formats, in the shares of `KINDS`). Each file written is a pooled
encoding with a unique metadata block spliced in (a PNG `tEXt` chunk, a JPEG comment), so every
file has its own bytes and content hash while its pixels are the pooled picture's: ingest
still reads, hashes and fully decodes every file, preprocess and Keras decode every one, and
the generator spends its time writing files, not encoding them.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CLASSES = 10
POOL_PER_CLASS = 100
# mode, format, share of files: mostly everyday RGB/grey, some of every awkward kind.
KINDS = [
    ("RGB", "JPEG", 40),
    ("L", "PNG", 20),
    ("RGBA", "PNG", 10),
    ("P", "PNG", 10),
    ("CMYK", "JPEG", 10),
    ("I;16", "PNG", 10),
]


def picture(label: int, variant: int) -> Image.Image:
    """A smooth picture per class (cheap to encode, small on disk), varied per variant."""
    rng = np.random.default_rng(label * 1000 + variant)
    side = int(rng.integers(48, 321))
    image = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3 + label % 4):
        box = sorted(rng.integers(0, side, 2).tolist()), sorted(rng.integers(0, side, 2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([box[0][0], box[1][0], box[0][1], box[1][1]], fill=colour)
    return image


def encode(image: Image.Image, mode: str, fmt: str) -> bytes:
    """`image` converted to `mode` and encoded as `fmt`."""
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), np.uint16) * 257
        image = Image.fromarray(grey)
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def with_tag(data: bytes, tag: bytes) -> bytes:
    """`data` (PNG or JPEG) with `tag` in a metadata block: other bytes, the same pixels."""
    if data.startswith(b"\x89PNG"):
        body = b"tEXt" + b"id\x00" + tag
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:33] + chunk + data[33:]  # after the signature and IHDR
    body = b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag  # a JPEG comment after SOI
    return data[:2] + body + data[2:]


def pool() -> list[list[tuple[bytes, str]]]:
    """Per class, `POOL_PER_CLASS` encoded pictures with their file suffix."""
    kinds = [kind for kind in KINDS for _ in range(kind[2])]
    step = len(kinds) / POOL_PER_CLASS
    return [
        [
            (encode(picture(label, v), *kinds[int(v * step)][:2]), kinds[int(v * step)][1])
            for v in range(POOL_PER_CLASS)
        ]
        for label in range(CLASSES)
    ]


def write_folder(root: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """Writes `n` distinct files over 10 class folders; returns their count, bytes and seconds."""
    start = time.perf_counter()
    encoded = pool()
    rng = np.random.default_rng(seed)
    for label in range(CLASSES):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
    total = 0
    for i, variant in enumerate(rng.integers(POOL_PER_CLASS, size=n).tolist()):
        label = i % CLASSES
        data, fmt = encoded[label][variant]
        data = with_tag(data, str(i).encode())
        suffix = "jpg" if fmt == "JPEG" else "png"
        (root / f"class{label}" / f"img{i:07d}.{suffix}").write_bytes(data)
        total += len(data)
    return {"files": n, "bytes": total, "seconds": time.perf_counter() - start}
