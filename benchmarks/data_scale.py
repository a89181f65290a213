"""Data at scale: ingest + preprocess throughput and peak RSS as the data set grows.

    .venv/bin/python -m benchmarks.data_scale [--sizes 2000 20000] [--out r.json]

Synthetic folders (generated here, on the fly): 10 classes, mixed sizes (48..320 px a side)
and modes (grey, RGB, RGBA, palette, CMYK JPEG, 16-bit PNG), PNG and JPEG, every file
distinct. Each measurement runs in its own child process, so its peak RSS (`ru_maxrss`) is
its own. For each size:

- edgetune ingest + preprocess to 96x96x3, once kept in memory (`.npz` arrays, the small-data
  path) and once streamed (TFRecord shards); above 50k images only streamed;
- one epoch of `tf.keras.utils.image_dataset_from_directory` over the same folder at
  96x96x3: what a Keras user runs instead (it decodes every epoch and checks nothing);
- the training input (batch 32, shuffled, 2 augmented copies per image) from the shards and
  from the in-memory arrays: the second of two epochs (above 50k images, one epoch).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.common import Progress, emit

CLASSES = 10
SIZE = (96, 96, 3)
BATCH = 32
# mode, format, share of files: mostly everyday RGB/grey, some of every awkward kind.
_KINDS = [
    ("RGB", "JPEG", 40),
    ("L", "PNG", 20),
    ("RGBA", "PNG", 10),
    ("P", "PNG", 10),
    ("CMYK", "JPEG", 10),
    ("I;16", "PNG", 10),
]


def _template(label: int, variant: int) -> Image.Image:
    """A smooth picture per class (cheap to encode, small on disk), varied per template."""
    rng = np.random.default_rng(label * 1000 + variant)
    side = int(rng.integers(48, 321))
    image = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3 + label % 4):
        box = sorted(rng.integers(0, side, 2).tolist()), sorted(rng.integers(0, side, 2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([box[0][0], box[1][0], box[0][1], box[1][1]], fill=colour)
    return image


def _encode(image: Image.Image, mode: str, fmt: str) -> bytes:
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


def write_folder(root: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """Writes `n` distinct images over 10 class folders; returns the bytes and seconds."""
    start = time.perf_counter()
    kinds = [k for k in _KINDS for _ in range(k[2])]
    templates = {(c, v): _template(c, v) for c in range(CLASSES) for v in range(8)}
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        label, variant = i % CLASSES, int(rng.integers(8))
        image = templates[(label, variant)].copy()
        # A unique mark in the corner: every file's content (and hash) differs.
        image.putpixel((0, 0), (i % 256, (i // 256) % 256, (i // 65536) % 256))
        mode, fmt, _ = kinds[i % len(kinds)]
        data = _encode(image, mode, fmt)
        path = root / f"class{label}" / f"img{i:07d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return {"files": n, "bytes": total, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------ measured in a child


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _spec(labels: tuple[str, ...]) -> Any:
    from edgetune.preprocessing import PreprocessSpec

    return PreprocessSpec(*SIZE[:2], SIZE[2], scale=1 / 255, offset=0.0, labels=labels)


def child_edgetune(folder: Path, work: Path, stream: bool, copies: int) -> dict[str, Any]:
    """Ingest + preprocess, streamed (shards) or kept in memory (.npz), whatever the size."""
    import tensorflow  # noqa: F401 - imported before the clock starts: a fixed cost, not per image

    from edgetune.components.ingest.core import ingest
    from edgetune.components.preprocess.core import AugmentPolicy, preprocess

    start = time.perf_counter()
    report = ingest(str(folder), work / "dataset", max_quarantine_fraction=0.0)
    ingested = time.perf_counter()
    done = preprocess(
        work / "dataset",
        work / "data",
        spec=_spec(report.classes),
        policy=AugmentPolicy(copies=copies),
        max_in_memory_bytes=0 if stream else 2**62,
    )
    end = time.perf_counter()
    n = report.n_train + report.n_val + report.n_test
    return {
        "images": n,
        "quarantined": report.n_quarantined,
        "storage": done.storage,
        "ingest_seconds": ingested - start,
        "preprocess_seconds": end - ingested,
        "images_per_second": n / (end - start),
        "peak_rss_mib": _peak_rss_mib(),
    }


def _epochs(ds: Any, epochs: int = 2) -> list[tuple[int, float]]:
    """Examples and seconds of each full pass, as a training loop iterates it."""
    passes = []
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for _, y in ds:
            n += int(y.shape[0])
        passes.append((n, time.perf_counter() - start))
    return passes


def child_keras(folder: Path) -> dict[str, Any]:
    """One epoch of `image_dataset_from_directory` over `folder` at the benchmark's size."""
    import tensorflow as tf

    start = time.perf_counter()
    ds = tf.keras.utils.image_dataset_from_directory(
        folder, label_mode="int", image_size=SIZE[:2], batch_size=BATCH, shuffle=True, seed=0
    )
    listed = time.perf_counter() - start
    (n, seconds), *_ = _epochs(ds, 1)  # it decodes every file every epoch: one is the rate
    return {
        "images": n,
        "listing_seconds": listed,
        "epoch_seconds": seconds,
        "images_per_second": n / (listed + seconds),
        "peak_rss_mib": _peak_rss_mib(),
    }


def child_training_input(data_dir: Path, epochs: int) -> dict[str, Any]:
    """`epochs` passes over the training split through `training.split_dataset`."""
    import tensorflow  # noqa: F401 - imported before the clock starts

    from edgetune.components.common import training

    start = time.perf_counter()
    ds, n_epoch = training.split_dataset(data_dir, "train", BATCH, shuffle=True, seed=0)
    built = time.perf_counter() - start
    passes = _epochs(ds, epochs)
    n, last = passes[-1]
    return {
        "examples_per_epoch": n_epoch,
        "examples_seen": n,
        "build_seconds": built,  # for the in-memory path: loading the .npz
        "epoch_seconds": [round(seconds, 3) for _, seconds in passes],
        "examples_per_second": n / last,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _child(kind: str, *args: str) -> dict[str, Any]:
    """Runs one measurement in a fresh interpreter; returns its JSON result."""
    command = [sys.executable, "-m", "benchmarks.data_scale", "--child", kind, *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- the run


def run(work: Path, sizes: tuple[int, ...] = (2000, 20000), copies: int = 2) -> dict[str, Any]:
    """Every measurement for every size, each in its own process; the section's result."""
    log = Progress("data_scale")
    results: dict[str, Any] = {"image_size": list(SIZE), "classes": CLASSES, "copies": copies}
    results["sizes"] = {}
    for n in sizes:
        folder = work / f"images-{n}"
        log(f"{n} images: generating")
        row: dict[str, Any] = {"generated": write_folder(folder, n)}
        big = n > 50_000
        variants = (("stream", True),) if big else (("memory", False), ("stream", True))
        for variant, stream in variants:
            log(f"{n} images: edgetune ingest + preprocess ({variant})")
            out = work / f"{variant}-{n}"
            row[f"edgetune_{variant}"] = _child(
                "edgetune", str(folder), str(out), str(int(stream)), str(copies)
            )
            log(f"  {row[f'edgetune_{variant}']}")
            log(f"{n} images: one training-input epoch ({variant})")
            epochs = "1" if big else "2"
            row[f"training_input_{variant}"] = _child("training", str(out / "data"), epochs)
            log(f"  {row[f'training_input_{variant}']}")
        log(f"{n} images: image_dataset_from_directory, one epoch")
        row["keras_dir"] = _child("keras", str(folder))
        log(f"  {row['keras_dir']}")
        results["sizes"][str(n)] = row
        for path in sorted(work.glob(f"*-{n}"), reverse=True):
            subprocess.run(["rm", "-rf", str(path)], check=True)  # free the disk for the next
    return results


def main() -> None:
    """The command line: a standalone run, or one measurement as a child (`--child`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON result here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "edgetune":
            result = child_edgetune(Path(rest[0]), Path(rest[1]), rest[2] == "1", int(rest[3]))
        elif kind == "keras":
            result = child_keras(Path(rest[0]))
        else:
            result = child_training_input(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        emit(run(Path(tmp), tuple(args.sizes), args.copies), args.out)


if __name__ == "__main__":
    main()


def report_lines(r: dict[str, Any]) -> list[str]:
    """The section as Markdown, for benchmarks/report.py."""
    from benchmarks.report import n, s, table

    def rss(d: dict[str, Any]) -> str:
        return "error" if "error" in d else f"{d['peak_rss_mib']:,.0f} MiB"

    def rate(d: dict[str, Any], key: str) -> str:
        return d.get("error", "")[:60] if "error" in d else n(d[key])

    rows = []
    for size, row in r["sizes"].items():
        for variant in ("memory", "stream"):
            if f"edgetune_{variant}" not in row:
                continue
            et, ti = row[f"edgetune_{variant}"], row[f"training_input_{variant}"]
            storage = et.get("storage", "?")
            rows.append(
                [
                    n(int(size)),
                    f"edgetune ingest + preprocess ({storage})",
                    rate(et, "images_per_second"),
                    rss(et),
                ]
            )
            rows.append(
                [
                    n(int(size)),
                    f"training input from {storage}, {r['copies']} copies (last epoch)",
                    rate(ti, "examples_per_second"),
                    rss(ti),
                ]
            )
        keras = row["keras_dir"]
        rows.append(
            [
                n(int(size)),
                "image_dataset_from_directory, 1 epoch",
                rate(keras, "images_per_second"),
                rss(keras),
            ]
        )
    first = next(iter(r["sizes"].values()))["generated"]
    return [
        *table(["images", "what", "images / s", "peak RSS"], rows),
        "",
        f"Synthetic folders of 10 classes, mixed sizes (48..320 px) and modes (RGB and CMYK "
        f"JPEG; grey, RGBA, palette and 16-bit PNG), {first['bytes'] / first['files'] / 1024:.1f} "
        f"KiB a file; to {r['image_size'][0]}x{r['image_size'][1]}x{r['image_size'][2]}. Each "
        "line is a fresh process (peak RSS is its own `ru_maxrss`, TensorFlow included); "
        "TensorFlow is imported before the clock starts. edgetune's rate counts every image "
        "once through ingest (read, hash, full decode, checks, Parquet) and preprocess (decode, "
        f"resize, write); generation took {s(first['seconds'])} for {n(first['files'])} files.",
    ]
