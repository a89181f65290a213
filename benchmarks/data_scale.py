"""Data at scale: ingest + preprocess throughput and peak RSS as the data set grows.

    .venv/bin/python -m benchmarks.data_scale [--sizes 2000 20000 200000] [--work DIR]
        [--results-file benchmarks/results/<UTC>.json] [--out r.json]

Synthetic folders (generated here, on the fly, `synthetic_images.py`): 10 classes, mixed sizes
(48..320 px a side) and modes (grey, RGB, RGBA, palette, CMYK JPEG, 16-bit PNG), PNG and JPEG,
every file distinct. Each measurement runs in its own child process, so its peak RSS
(`ru_maxrss`) is its own. For each size:

- edgetune ingest (Parquet shards) + preprocess to 96x96x3, once kept in memory (`.npz`
  arrays, the small-data path) and once streamed (TFRecord shards); above 50k images only
  streamed;
- one `model.fit` epoch of a small CNN over the training split (2 augmented copies per
  image, batch 32) as fine_tune feeds it: from the shards, and at 2k also from the arrays;
- one epoch of `tf.keras.utils.image_dataset_from_directory` over the same folder at
  96x96x3: what a Keras user runs instead (it decodes every epoch and checks nothing);
- the training input alone (no model) from the shards, and at 2k from the in-memory arrays:
  the second of two epochs (above 50k images, one epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Progress, emit
from benchmarks.synthetic_images import CLASSES, write_folder

SIZE = (96, 96, 3)
BATCH = 32
SIZES = (2000, 20000, 200000)
STREAM_ONLY_ABOVE = 50_000  # ingest + preprocess kept in memory only up to here
# Training from the in-memory arrays only up to here (where preprocess itself keeps them, below
# 256 MiB of arrays): at 20k images it peaked at 13.9 GB (results/20261130T144108Z.json), too
# much for a machine others share.
TRAIN_IN_MEMORY_UP_TO = 5_000


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


def small_cnn(classes: int) -> Any:
    """The bench's model: three strided convolutions, pooled, a softmax (about 6k parameters).

    Small on purpose: the epoch measures the data path feeding `model.fit`, not the model.
    """
    import tf_keras as keras

    inputs = keras.Input(SIZE)
    x = inputs
    for filters in (8, 16, 32):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="bench_cnn")


def child_fit(data_dir: Path) -> dict[str, Any]:
    """One `model.fit` epoch of `small_cnn` over the training split, as fine_tune feeds it."""
    import tensorflow  # noqa: F401 - imported before the clock starts

    from edgetune.components.common import training

    start = time.perf_counter()
    ds, n_epoch = training.split_dataset(data_dir, "train", BATCH, shuffle=True, seed=0)
    model = small_cnn(len(training.load_spec(data_dir).labels))
    training.compile_classifier(model, 1e-3)
    built = time.perf_counter()
    history = model.fit(ds, epochs=1, verbose=0)
    seconds = time.perf_counter() - built
    return {
        "examples_per_epoch": n_epoch,
        "params": model.count_params(),
        "build_seconds": built - start,  # for the in-memory path: loading the .npz
        "epoch_seconds": seconds,
        "examples_per_second": n_epoch / seconds,
        "loss": history.history["loss"][-1],
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


def _measure_size(work: Path, n: int, copies: int, save: Any, log: Progress) -> dict[str, Any]:
    folder = work / f"images-{n}"
    row: dict[str, Any] = {}
    save(row)
    log(f"{n} images: generating")
    row["generated"] = write_folder(folder, n)
    variants = ("stream",) if n > STREAM_ONLY_ABOVE else ("memory", "stream")

    def measure(key: str, *args: str) -> None:
        log(f"{n} images: {key}")
        row[key] = _child(*args)
        log(f"  {row[key]}")
        save(row)

    for variant in variants:
        out = work / f"{variant}-{n}"
        stream = str(int(variant == "stream"))
        measure(f"edgetune_{variant}", "edgetune", str(folder), str(out), stream, str(copies))
        if variant == "stream" or n <= TRAIN_IN_MEMORY_UP_TO:
            measure(f"fit_{variant}", "fit", str(out / "data"))
    measure("keras_dir", "keras", str(folder))
    epochs = "1" if n > STREAM_ONLY_ABOVE else "2"
    for variant in variants:
        if variant == "stream" or n <= TRAIN_IN_MEMORY_UP_TO:
            data = str(work / f"{variant}-{n}" / "data")
            measure(f"training_input_{variant}", "training", data, epochs)
    for path in sorted(work.glob(f"*-{n}"), reverse=True):
        subprocess.run(["rm", "-rf", str(path)], check=True)  # free the disk for the next
    return row


def run(
    work: Path, sizes: tuple[int, ...] = SIZES, copies: int = 2, save: Any = None
) -> dict[str, Any]:
    """Every measurement for every size, each in its own process; the section's result.

    `save(results)` is called after each measurement, so a stopped run keeps what it measured.
    """
    log = Progress("data_scale")
    results: dict[str, Any] = {"image_size": list(SIZE), "classes": CLASSES, "copies": copies}
    results["sizes"] = {}

    def keep(row: dict[str, Any], n: int) -> None:
        results["sizes"][str(n)] = row
        if save is not None:
            save(results)

    for n in sizes:
        _measure_size(work, n, copies, lambda row, n=n: keep(row, n), log)
    return results


def _results_writer(path: Path, sizes: tuple[int, ...]) -> Any:
    """Writes a standalone run as `benchmarks.run` writes a section, after every measurement."""
    from datetime import UTC, datetime

    from benchmarks import machine
    from benchmarks.run import SCHEMA
    from edgetune import files

    started, start = datetime.now(UTC), time.perf_counter()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "sections_run": ["data_scale"],
        "section_seconds": {},
        "results": {},
        "errors": {},
        "note": f"run standalone: python -m benchmarks.data_scale --sizes {' '.join(map(str, sizes))}",
    }

    def save(results: dict[str, Any]) -> None:
        doc["results"]["data_scale"] = results
        doc["section_seconds"]["data_scale"] = doc["total_seconds"] = time.perf_counter() - start
        doc["machine"]["load_average_end"] = machine.load_average()
        doc["machine"]["git_commit_end"] = machine.git_commit()
        doc["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        files.write_json(path, doc)

    return save


def main() -> None:
    """The command line: a standalone run, or one measurement as a child (`--child`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON result here")
    parser.add_argument("--work", help="the folder for the images and outputs (a temp dir in it)")
    parser.add_argument(
        "--results-file", type=Path, help="write a results file (benchmarks/results format)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "edgetune":
            result = child_edgetune(Path(rest[0]), Path(rest[1]), rest[2] == "1", int(rest[3]))
        elif kind == "keras":
            result = child_keras(Path(rest[0]))
        elif kind == "fit":
            result = child_fit(Path(rest[0]))
        else:
            result = child_training_input(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return
    sizes = tuple(args.sizes)
    save = _results_writer(args.results_file, sizes) if args.results_file else None
    with tempfile.TemporaryDirectory(prefix="bench-data-", dir=args.work) as tmp:
        emit(run(Path(tmp), sizes, args.copies, save), args.out)


if __name__ == "__main__":
    main()
