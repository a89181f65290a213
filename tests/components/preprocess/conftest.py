"""A tiny ingested dataset (three classes of mixed size and colour) for the preprocess tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetune.components.ingest.core import ingest
from edgetune.preprocessing import PreprocessSpec

CLASSES = ("el", "tee", "vee")


def glyph(label: str, i: int) -> Image.Image:
    """A bright stroke shape on black, shifted a little per image; none is left-right symmetric."""
    size = 10 + i % 3 * 4
    pixels = np.zeros((size, size), np.uint8)
    a, b = 1 + i % 2, size - 2
    if label == "el":
        pixels[a:b, a] = 255
        pixels[b - 1, a:b] = 200
    elif label == "tee":
        pixels[a, a:b] = 255
        pixels[a:b, a + 2] = 180
    else:
        for r in range(a, b):
            pixels[r, min(r, size - 1)] = 230
        pixels[a:b, a] = 120
    pixels[-1, -1] = 5 + 10 * i  # a faint corner mark keeps every image's bytes distinct
    image = Image.fromarray(pixels)
    return image.convert("RGB") if i % 2 else image


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("preprocess")
    for label in CLASSES:
        (root / "src" / label).mkdir(parents=True)
        for i in range(7):
            glyph(label, i).save(root / "src" / label / f"{i}.png")
    ingest(str(root / "src"), root / "dataset", min_per_class=3)
    return root / "dataset"


@pytest.fixture
def spec() -> PreprocessSpec:
    return PreprocessSpec(
        height=12, width=12, channels=1, scale=1 / 255, offset=0.0, labels=CLASSES
    )
