"""Tiny labelled image folders, written with Pillow, for the ingest tests."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Sizes, modes and formats cycle so every folder mixes them, as users' folders do.
_VARIANTS = [((8, 8), "L", "PNG"), ((12, 9), "RGB", "JPEG"), ((10, 14), "L", "BMP")]
_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp"}


def encode(seed: int, size: tuple[int, int] = (8, 8), mode: str = "L", fmt: str = "PNG") -> bytes:
    """An image of random pixels: distinct seeds give distinct bytes."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode in ("RGB", "CMYK") else (size[1], size[0])
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    if mode == "CMYK":
        image = image.convert("CMYK")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write_class(root: Path, label: str, n: int, first: int = 0) -> list[Path]:
    """Writes images number `first` .. `first + n - 1` of class `label`; returns their paths."""
    (root / label).mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + n):
        size, mode, fmt = _VARIANTS[i % len(_VARIANTS)]
        path = root / label / f"img{i:03d}{_SUFFIX[fmt]}"
        path.write_bytes(encode(zlib.crc32(f"{label}/{i}".encode()), size, mode, fmt))
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Returns `make(counts, name="src")`: a folder with `counts[label]` images per class."""

    def make(counts: dict[str, int], name: str = "src") -> Path:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        for label, n in counts.items():
            write_class(root, label, n)
        return root

    return make


@pytest.fixture
def encode_image() -> Callable[..., bytes]:
    return encode


@pytest.fixture
def add_images() -> Callable[..., list[Path]]:
    return write_class
