"""A folder as users have them: every mode, odd names, system files, and a few broken files.

One run must keep every good file, name every bad one with its reason, and report the rest.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetune import files
from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.ingest.core import IngestStopped, ingest
from edgetune.preprocessing import PreprocessSpec, image_bytes_to_pixels


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(seed: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Image.Image:
    shape = (size[1], size[0], 3) if mode != "L" else (size[1], size[0])
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return Image.fromarray(pixels)


def special_images(seed: int) -> dict[str, bytes]:
    """One good file of each kind a camera, phone, scanner or editor writes."""
    palette = noise(seed).convert("P")
    sixteen = np.random.default_rng(seed).integers(0, 65536, (10, 12), dtype=np.uint16)
    big = Image.linear_gradient("L").resize((2400, 1800)).convert("RGB")
    return {
        "grey.png": encoded(noise(seed, mode="L"), "PNG"),
        "colour.jpg": encoded(noise(seed + 1), "JPEG"),
        "alpha.png": encoded(noise(seed + 2).convert("RGBA"), "PNG"),
        "palette.png": encoded(palette, "PNG", transparency=0),
        "print.jpg": encoded(noise(seed + 3).convert("CMYK"), "JPEG"),
        "scan16.png": encoded(Image.fromarray(sixteen), "PNG"),
        "dot.png": encoded(noise(seed + 4, (1, 1)), "PNG"),
        "big.jpg": encoded(big.rotate(seed), "JPEG"),
        "PHOTO.JPG": encoded(noise(seed + 5), "JPEG"),
        "SCAN.PNG": encoded(noise(seed + 6, mode="L"), "PNG"),
        "sheet.tif": encoded(noise(seed + 7), "TIFF"),
    }


@pytest.fixture
def mixed_folder(tmp_path: Path) -> tuple[Path, set[str]]:
    """The folder, and the printable names of the files that must be kept."""
    root = tmp_path / "photos"
    good: set[str] = set()
    for c, label in enumerate(("birds", "cats", "dogs")):
        (root / label).mkdir(parents=True)
        for name, data in special_images(100 * c).items():
            (root / label / name).write_bytes(data)
            good.add(f"{label}/{name}")
        for i in range(15):  # enough good files that 3 broken ones stay under 5%
            (root / label / f"filler{i}.png").write_bytes(encoded(noise(1000 * c + i), "PNG"))
            good.add(f"{label}/filler{i}.png")
    (root / "cats" / "indoor").mkdir()
    (root / "cats" / "indoor" / "sofa.png").write_bytes(encoded(noise(7007), "PNG"))
    good.add("cats/indoor/sofa.png")
    with open(os.path.join(os.fsencode(root), b"dogs", b"caf\xe9.png"), "wb") as f:
        f.write(encoded(noise(8008), "PNG"))  # Latin-1 name: not valid UTF-8
    good.add("dogs/caf\\xe9.png")
    (root / "empty").mkdir()
    # Broken files: each must be quarantined with its reason.
    (root / "birds" / "zero.png").write_bytes(b"")
    (root / "cats" / "truncated.png").write_bytes(encoded(noise(9, (64, 64)), "PNG")[:-300])
    (root / "dogs" / "notes.png").write_text("this is text, not a picture")
    # System and hidden files: skipped and counted.
    (root / "cats" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "birds" / ".hidden.png").write_bytes(encoded(noise(10), "PNG"))
    (root / "__MACOSX" / "cats").mkdir(parents=True)
    (root / "__MACOSX" / "cats" / "._grey.png").write_bytes(b"\0\5\x16\7")
    return root, good


def test_a_mixed_folder_ingests_in_one_run_keeping_every_good_file(mixed_folder, tmp_path):
    root, good = mixed_folder

    report = ingest(str(root), tmp_path / "out")

    assert {q["file"]: q["kind"] for q in report.quarantined} == {
        "birds/zero.png": "empty file",
        "cats/truncated.png": "cannot decode",
        "dogs/notes.png": "not an image",
    }
    rows = dataset_shards.read_columns(tmp_path / "out").to_pylist()
    assert {r["path"] for r in rows} == good
    assert report.classes == ("birds", "cats", "dogs") and report.empty_classes == ("empty",)
    assert report.skipped == {".DS_Store": 1, "Thumbs.db": 1, "__MACOSX": 1, "hidden": 1}
    assert {"L", "P", "RGB", "RGBA", "CMYK", "I;16"} <= set(report.image_sizes["modes"])
    assert report.image_sizes["max_width"] == 2400 and report.image_sizes["min_width"] == 1
    written = json.loads((tmp_path / "out" / files.INGEST_REPORT).read_text())
    assert written["status"] == "ok" and written["n_quarantined"] == 3
    # Every kept file decodes to the model's input, as preprocess and the device will do it.
    spec = PreprocessSpec(16, 16, 3, 1 / 255, 0.0, report.classes)
    for row in rows:
        assert image_bytes_to_pixels(row["image"], spec, row["path"]).shape == (16, 16, 3)


def test_one_run_reports_every_problem_then_stops_with_one_line(tmp_path):
    root = tmp_path / "src"
    for label, n in (("a", 8), ("b", 8), ("tiny", 2)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            (root / label / f"{i}.png").write_bytes(
                encoded(noise(zlib.crc32(f"{label}{i}".encode())), "PNG")
            )
    (root / "void").mkdir()
    (root / "a" / "blank.png").write_bytes(encoded(Image.new("L", (8, 8), 200), "PNG"))
    (root / "a" / "0copy.png").write_bytes((root / "a" / "0.png").read_bytes())
    (root / "b" / "twin.png").write_bytes((root / "a" / "1.png").read_bytes())
    (root / "b" / "bad.png").write_bytes(b"GIF89a broken")
    (root / "b" / "empty.png").write_bytes(b"")

    with pytest.raises(IngestStopped) as error:
        ingest(str(root), tmp_path / "out")

    message = str(error.value)
    assert "\n" not in message
    assert "4 of 23 images (17.4%) quarantined (label conflict 2, " in message
    assert "class 'tiny' has 2 usable images; min_per_class=5" in message
    report = json.loads(error.value.report_path.read_text())
    assert report["status"] == "stopped" and len(report["problems"]) == 2
    assert report["empty_classes"] == ["void"] and report["small_classes"] == {"tiny": 2}
    assert report["class_counts"] == {"a": 9, "b": 8, "tiny": 2}
    assert report["label_conflicts"][0]["files"] == ["a/1.png", "b/twin.png"]
    assert report["duplicates"][0]["files"] == ["a/0.png", "a/0copy.png"]
    assert report["near_empty"] == ["a/blank.png"]
    assert {q["file"] for q in report["quarantined"]} == {
        "a/1.png",
        "b/twin.png",
        "b/bad.png",
        "b/empty.png",
    }
