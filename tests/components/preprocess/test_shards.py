"""The streaming path: uint8 TFRecord shards written by preprocess, read back by training."""

from __future__ import annotations

import collections
import json

import numpy as np

from edgetune import files
from edgetune.components.common import training
from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.preprocess import shards
from edgetune.components.preprocess.core import AugmentPolicy, preprocess
from edgetune.preprocessing import image_bytes_to_pixels, normalize

STILL = AugmentPolicy(copies=2, translate=0, rotate_degrees=0, zoom=0, brightness=0, contrast=0)


def originals(dataset_dir, spec, split):
    rows = dataset_shards.read_columns(dataset_dir).to_pylist()
    chosen = [r for r in rows if r["split"] == split]
    pixels = np.stack([image_bytes_to_pixels(r["image"], spec) for r in chosen])
    return pixels, np.array([r["label_index"] for r in chosen], np.int32)


def test_above_the_memory_limit_preprocess_writes_shards_not_arrays(dataset_dir, spec, tmp_path):
    report = preprocess(dataset_dir, tmp_path, spec=spec, policy=STILL, max_in_memory_bytes=0)

    assert report.storage == "tfrecord"
    assert not any(tmp_path.glob("*.npz")) and shards.shard_paths(tmp_path, "train")
    assert report.counts["train"] == 3 * report.n_train_original
    doc = json.loads((tmp_path / files.PREPROCESSING_SPEC).read_text())
    assert doc["storage"] == "tfrecord" and doc["counts"] == report.counts
    assert (tmp_path / files.AUGMENT_PREVIEW).is_file()
    # Val and test read back in order, equal to what the in-memory path would hold.
    for split in ("val", "test"):
        x, y = training.load_split(tmp_path, split)
        want_x, want_y = originals(dataset_dir, spec, split)
        np.testing.assert_array_equal(x, normalize(want_x, spec))
        np.testing.assert_array_equal(y, want_y)


def test_the_training_stream_holds_each_original_once_and_its_copies(dataset_dir, spec, tmp_path):
    preprocess(dataset_dir, tmp_path, spec=spec, policy=STILL, max_in_memory_bytes=0)

    ds, n = training.split_dataset(tmp_path, "train", batch_size=4, shuffle=True, seed=1)
    seen = [
        (x.tobytes(), int(y)) for xb, yb in ds for x, y in zip(xb.numpy(), yb.numpy(), strict=True)
    ]

    want_x, want_y = originals(dataset_dir, spec, "train")
    want = [(x.tobytes(), int(y)) for x, y in zip(normalize(want_x, spec), want_y, strict=True)]
    # STILL copies equal their originals: every image appears 1 + 2 times per epoch.
    assert len(seen) == n == 3 * len(want)
    assert collections.Counter(seen) == collections.Counter(want * 3)


def test_on_the_fly_augmentation_varies_the_copies(dataset_dir, spec, tmp_path):
    policy = AugmentPolicy(copies=2)
    preprocess(dataset_dir, tmp_path, spec=spec, policy=policy, max_in_memory_bytes=0)

    ds, n = training.split_dataset(tmp_path, "train", batch_size=8, shuffle=True, seed=0)
    xs = np.concatenate([x.numpy() for x, _ in ds])

    want_x, _ = originals(dataset_dir, spec, "train")
    originals_seen = {x.tobytes() for x in normalize(want_x, spec)}
    distinct = {x.tobytes() for x in xs}
    assert len(xs) == n and originals_seen <= distinct
    assert len(distinct - originals_seen) > len(want_x)  # the copies differ from the originals
    assert xs.dtype == np.float32 and xs.min() >= 0.0 and xs.max() <= 1.0


def test_small_data_keeps_the_in_memory_fast_path(dataset_dir, spec, tmp_path):
    report = preprocess(dataset_dir, tmp_path, spec=spec, policy=STILL)

    ds, n = training.split_dataset(tmp_path, "val", batch_size=4, shuffle=False)

    assert report.storage == "npz" and not shards.shard_paths(tmp_path, "train")
    assert n == report.counts["val"] == sum(len(y) for _, y in ds)
