"""Streaming storage for data sets too large for memory: uint8 TFRecord shards per split.

preprocess writes each decoded image once, as raw uint8 bytes in a `tf.train.Example`
(`x`, `y`), into `{split}-{k:05d}-of-{n:05d}.tfrecord`. Training images are spread over the
shards at random (seeded), so every shard mixes every class and a reader that interleaves
shards and shuffles a buffer sees a well-mixed stream. Val and test keep the dataset's order.
Augmentation is not materialised: the training reader applies it on the fly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetune import files
from edgetune.preprocessing import PreprocessSpec

SPLITS = ("train", "val", "test")
SHARD_EXAMPLES = 2048  # images per shard, about 55 MB at 96x96x3
SHUFFLE_BUFFER = 4096  # examples a shuffling reader holds: bounded, whatever the data size
_PREVIEW_ROWS = 10
_AUGMENT_BATCH = 64  # copies warped per op call on the fly


@dataclass(frozen=True)
class Written:
    """Examples per split as the reader yields them per epoch, and originals for a preview."""

    counts: dict[str, int]
    preview: tuple[np.ndarray, np.ndarray]  # one original per class, and their labels


def shard_paths(data_dir: str | Path, split: str) -> list[Path]:
    """The TFRecord shards of `split` in `data_dir`, in order (empty when the split is in memory)."""
    return sorted(Path(data_dir).glob(f"{split}-*.tfrecord"))


def write_shards(
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    splits: np.ndarray,
    out: Path,
    policy: Any,
    seed: int,
) -> Written:
    """Writes every decoded batch into its split's shards; returns counts and preview images."""
    import tensorflow as tf

    sizes = {s: int(np.sum(splits == s)) for s in SPLITS}
    n_shards = {s: max(1, math.ceil(n / SHARD_EXAMPLES)) for s, n in sizes.items()}
    rng = np.random.default_rng(seed)
    seen = dict.fromkeys(SPLITS, 0)
    preview: dict[int, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        writers = {
            split: [
                tf.io.TFRecordWriter(
                    str(stack.enter_context(files.atomic_path(out / _name(split, k, n))))
                )
                for k in range(n)
            ]
            for split, n in n_shards.items()
        }
        for writer in (w for ws in writers.values() for w in ws):
            stack.callback(writer.close)  # closed before atomic_path renames, in reverse order
        row = 0
        for pixels, labels in batches:
            for x, y, split in zip(pixels, labels, splits[row : row + len(pixels)], strict=True):
                k = _shard_of(split, seen[split], n_shards[split], rng)
                writers[split][k].write(_example(tf, x, int(y)))
                seen[split] += 1
                if split == "train" and len(preview) < _PREVIEW_ROWS:
                    preview.setdefault(int(y), x)
            row += len(pixels)
    counts = {"train": sizes["train"] * (1 + policy.copies), "val": sizes["val"]}
    counts["test"] = sizes["test"]
    labels = np.array(sorted(preview), np.int32)
    originals = np.stack([preview[i] for i in labels]) if len(labels) else pixels[:0]
    return Written(counts, (originals, labels))


def _name(split: str, k: int, n: int) -> str:
    return f"{split}-{k:05d}-of-{n:05d}.tfrecord"


def _shard_of(split: str, index: int, n: int, rng: np.random.Generator) -> int:
    if split == "train":
        return int(rng.integers(n))  # every shard mixes every class
    return index // SHARD_EXAMPLES  # val and test keep the dataset's order


def _example(tf: Any, pixels: np.ndarray, label: int) -> bytes:
    feature = {
        "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()])),
        "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _parser(tf: Any, spec: PreprocessSpec) -> Any:
    shape = (spec.height, spec.width, spec.channels)
    features = {
        "x": tf.io.FixedLenFeature([], tf.string),
        "y": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record: Any) -> tuple[Any, Any]:
        example = tf.io.parse_single_example(record, features)
        pixels = tf.reshape(tf.io.decode_raw(example["x"], tf.uint8), shape)
        return pixels, tf.cast(example["y"], tf.int32)

    return parse


def read_split(
    data_dir: str | Path, split: str, spec: PreprocessSpec
) -> tuple[np.ndarray, np.ndarray]:
    """A split's uint8 pixels and labels, in order, in memory (for val, test, calibration)."""
    import tensorflow as tf

    paths = [str(p) for p in shard_paths(data_dir, split)]
    ds = tf.data.TFRecordDataset(paths).map(_parser(tf, spec)).batch(1024)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    shape = (0, spec.height, spec.width, spec.channels)
    return (np.concatenate(xs) if xs else np.zeros(shape, np.uint8)), (
        np.concatenate(ys) if ys else np.zeros(0, np.int32)
    )


def stream(
    data_dir: str | Path,
    split: str,
    spec: PreprocessSpec,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    policy: Any = None,
) -> Any:
    """A tf.data pipeline over a split's shards: normalised float32 batches and int32 labels.

    With `shuffle`, the shard order is shuffled each epoch, shards are interleaved and a
    bounded buffer shuffled. With a `policy` of `copies` > 0, every image appears once as
    itself and `copies` times augmented on the fly (as preprocess's in-memory path writes it).
    """
    import tensorflow as tf

    from edgetune.components.preprocess.augment import augment_batch

    parse = _parser(tf, spec)
    paths = [str(p) for p in shard_paths(data_dir, split)]

    def examples(repeat: int, stream_seed: int) -> Any:
        files_ds = tf.data.Dataset.from_tensor_slices(paths)
        if shuffle:
            files_ds = files_ds.shuffle(len(paths), seed=stream_seed, reshuffle_each_iteration=True)
        ds = files_ds.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(paths), 8),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=not shuffle,
        )
        return ds.repeat(repeat).map(parse, num_parallel_calls=tf.data.AUTOTUNE)

    copies = policy.copies if policy is not None else 0
    ds = examples(1, seed)
    if copies:

        def augment(i: Any, batch: Any) -> Any:
            x, y = batch
            return augment_batch(tf, x, policy, tf.stack([tf.constant(seed, tf.int64), i])), y

        # Only the copies are warped, a batch at a time (one op call for many images), then
        # drawn in proportion with the originals so both spread over the epoch.
        augmented = (
            examples(copies, seed + 1)
            .batch(_AUGMENT_BATCH)
            .enumerate()
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
        )
        ds = tf.data.Dataset.sample_from_datasets(
            [ds, augmented], weights=[1.0, float(copies)], seed=seed
        )
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    scale, offset = np.float32(spec.scale), np.float32(spec.offset)
    ds = ds.map(
        lambda x, y: (tf.cast(x, tf.float32) * scale + offset, y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
