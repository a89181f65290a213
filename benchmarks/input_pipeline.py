"""Input pipeline: images/s through one epoch of the training split, edgetune vs Keras' loader.

    .venv/bin/python -m benchmarks.input_pipeline [--rounds 31] [--out r.json]

edgetune decodes every image once (ingest: read, hash, validate, Parquet; preprocess: resize,
augmented copies, uint8 .npz), then each training process loads the .npz, normalises it in
NumPy and feeds it through tf.data (`training.dataset`: shuffle, batch, prefetch). Keras'
`image_dataset_from_directory` reads, decodes and resizes every PNG every epoch. Both are fed
the same training files (the ingest split, through a folder of symlinks), batch size 32,
32x32 grey, normalised by the same spec. A third variant adds `.cache()` after the first
epoch, as the Keras tutorials do. The first epoch of each variant is a warm-up, excluded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Progress, default_preset, emit, median, prepared_data, timed
from edgetune.components.common import training
from edgetune.components.ingest import shards as dataset_shards

VARIANTS = {
    "edgetune": "edgetune: decoded once, uint8 .npz, tf.data from arrays",
    "keras_dir": "image_dataset_from_directory: decodes PNGs every epoch",
    "keras_dir_cache": "image_dataset_from_directory + .cache()",
}


def training_files_folder(dataset_dir: Path, source: Path, out: Path) -> int:
    """A class-per-folder tree of symlinks to exactly the files ingest put in the train split."""
    table = dataset_shards.read_columns(dataset_dir, columns=["path", "label", "split"])
    count = 0
    columns = (table.column(c).to_pylist() for c in table.column_names)
    for path, label, split in zip(*columns, strict=True):
        if split != "train":
            continue
        link = out / label / Path(path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source / path, link)
        count += 1
    return count


def keras_dataset(folder: Path, spec: Any, batch_size: int, cache: bool, seed: int) -> Any:
    """Keras' `image_dataset_from_directory` over `folder`, sized and normalised by `spec`."""
    import tensorflow as tf
    import tf_keras as keras

    ds = keras.utils.image_dataset_from_directory(
        folder,
        label_mode="int",
        color_mode="grayscale" if spec.channels == 1 else "rgb",
        image_size=(spec.height, spec.width),
        interpolation=spec.resample,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
    )
    scale, offset = spec.scale, spec.offset
    ds = ds.map(lambda x, y: (x * scale + offset, y), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)


def one_epoch(ds: Any) -> tuple[int, float]:
    """Images seen and seconds for one full pass, as a training loop iterates it."""
    start = time.perf_counter()
    n = 0
    for _, y in ds:
        n += int(y.shape[0])
    return n, time.perf_counter() - start


def break_even(one_time: float, epoch_once: float, epoch_each: float) -> float | None:
    """Epochs after which decoding once (plus `one_time`) beats decoding every epoch.

    Args:
        one_time: seconds the decode-once path pays before its first epoch.
        epoch_once: seconds of one epoch of the decode-once path.
        epoch_each: seconds of one epoch of the decode-every-epoch path.

    Returns:
        `one_time / (epoch_each - epoch_once)`, or None when decoding once never pays.
    """
    gain = epoch_each - epoch_once
    return one_time / gain if gain > 0 else None


def run(work: Path, *, rounds: int = 31) -> dict[str, Any]:
    """Times an epoch of each input pipeline over `rounds` rounds; returns images/s and break-evens."""
    import tensorflow as tf

    log = Progress("input_pipeline")
    preset = default_preset()
    batch, seed = preset["batch_size"], preset.get("seed", 0)
    once: dict[str, float] = {}
    log("ingest + preprocess of the default data (timed: the one-time cost)")
    data_dir = prepared_data(preset, work, once)
    spec = training.load_spec(data_dir)
    loads = [timed(training.load_split, data_dir, "train")[1] for _ in range(3)]
    once["load_npz_and_normalise"] = median(loads)
    x_train, y_train = training.load_split(data_dir, "train")
    n_originals = training_files_folder(work / "dataset", Path(preset["data_uri"]), work / "pngs")
    log(f"{n_originals} training PNGs linked; {len(x_train)} edgetune training rows")

    start = time.perf_counter()
    datasets = {
        "edgetune": training.dataset(x_train, y_train, batch, shuffle=True, seed=seed),
        "keras_dir": keras_dataset(work / "pngs", spec, batch, cache=False, seed=seed),
        "keras_dir_cache": keras_dataset(work / "pngs", spec, batch, cache=True, seed=seed),
    }
    build_seconds = time.perf_counter() - start
    tf.random.set_seed(seed)
    keys = list(datasets)
    epochs: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            epochs[key].append(one_epoch(datasets[key]))
        log(f"round {r + 1}/{rounds}" + (" (warm-up, excluded)" if r == 0 else ""))

    variants: dict[str, dict[str, Any]] = {}
    for key in keys:
        images = epochs[key][0][0]
        steady = [seconds for _, seconds in epochs[key][1:]]
        variants[key] = {
            "label": VARIANTS[key],
            "images_per_epoch": images,
            "first_epoch_seconds": epochs[key][0][1],
            "epoch_seconds": median(steady),
            "epoch_seconds_all": [round(s, 4) for _, s in epochs[key]],
            "images_per_second": images / median(steady),
        }
    ref = variants["keras_dir"]
    for v in variants.values():
        v["throughput_vs_keras_dir"] = v["images_per_second"] / ref["images_per_second"]
    one_time = once["ingest"] + once["preprocess"]
    et = variants["edgetune"]
    same_images = n_originals / et["images_per_second"]  # the N files, at edgetune's rate
    log("done")
    return {
        "batch_size": batch,
        "n_train_files": n_originals,
        "n_train_rows_edgetune": len(x_train),
        "augment_copies": (preset.get("augment") or {}).get("copies", 0),
        "default_training_epochs": sum(
            preset[k] for k in ("head_epochs", "unfreeze_epochs", "prune_epochs", "qat_epochs")
        ),
        "rounds": rounds,
        "one_time_seconds": once,
        "one_time_total_seconds": one_time,
        "keras_datasets_build_seconds": build_seconds,
        "variants": variants,
        # The same files each epoch: N originals through both paths.
        "edgetune_epoch_seconds_same_images": same_images,
        "break_even_epochs_same_images": break_even(one_time, same_images, ref["epoch_seconds"]),
        # Each path's real epoch: edgetune feeds its augmented copies too (3N rows).
        "break_even_epochs_real": break_even(one_time, et["epoch_seconds"], ref["epoch_seconds"]),
    }


def main() -> None:
    """Command line: runs the input-pipeline benchmark in a scratch folder and emits the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp:
        emit(run(Path(tmp), rounds=args.rounds), args.out)


if __name__ == "__main__":
    main()
