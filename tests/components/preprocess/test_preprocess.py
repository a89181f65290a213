"""preprocess on a tiny ingested dataset: arrays, augmentation, determinism and validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetune import files
from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.ingest.core import ingest
from edgetune.components.preprocess.core import AugmentPolicy, augment, preprocess
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import PreprocessSpec, image_bytes_to_pixels

# Every random range at zero: only the flags and the copy count act.
STILL = AugmentPolicy(copies=4, translate=0, rotate_degrees=0, zoom=0, brightness=0, contrast=0)


def _still(**changes) -> AugmentPolicy:
    return AugmentPolicy(**{**STILL.model_dump(), **changes})


def load(out: Path, split: str) -> dict[str, np.ndarray]:
    with np.load(files.split_file(out, split)) as npz:
        return {key: npz[key] for key in npz.files}


def dataset_pixels(dataset_dir: Path, spec: PreprocessSpec, split: str) -> np.ndarray:
    rows = dataset_shards.read_columns(dataset_dir).to_pylist()
    return np.stack([image_bytes_to_pixels(r["image"], spec) for r in rows if r["split"] == split])


def asymmetric_images() -> np.ndarray:
    images = np.zeros((3, 9, 9, 1), np.uint8)
    images[:, 1:8, 2, 0] = 250  # an "L": vertical bar on the left, foot to the right
    images[:, 7, 2:7, 0] = 180
    images[1, 0, 0, 0], images[2, 8, 8, 0] = 40, 90
    return images


def test_writes_uint8_arrays_and_train_grows_by_the_copies(dataset_dir, spec, tmp_path):
    report = preprocess(dataset_dir, tmp_path, spec=spec, policy=AugmentPolicy(copies=3))

    train = load(tmp_path, "train")
    n_original = report.n_train_original
    assert train["x"].dtype == np.uint8 and train["x"].shape == (4 * n_original, 12, 12, 1)
    assert train["y"].dtype == np.int32 and set(train["y"]) == {0, 1, 2}
    assert train["augmented"].sum() == 3 * n_original
    assert report.counts["train"] == 4 * n_original
    assert report.shapes["val"] == [report.counts["val"], 12, 12, 1]
    # The originals are in there unchanged, among their copies.
    originals = dataset_pixels(dataset_dir, spec, "train")
    assert sorted(a.tobytes() for a in train["x"][~train["augmented"]]) == sorted(
        a.tobytes() for a in originals
    )


def test_val_and_test_are_the_resized_originals_never_augmented(dataset_dir, spec, tmp_path):
    preprocess(dataset_dir, tmp_path, spec=spec, policy=AugmentPolicy(copies=5))

    rows = dataset_shards.read_columns(dataset_dir).to_pylist()
    for split in ("val", "test"):
        arrays = load(tmp_path, split)
        np.testing.assert_array_equal(arrays["x"], dataset_pixels(dataset_dir, spec, split))
        expected_y = [r["label_index"] for r in rows if r["split"] == split]
        assert arrays["y"].tolist() == expected_y and not arrays["augmented"].any()


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(dataset_dir, spec, tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        preprocess(dataset_dir, tmp_path / name, spec=spec, policy=AugmentPolicy(), seed=seed)

    for name in (files.split_file("", "train").name, files.AUGMENT_PREVIEW):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not np.array_equal(
        load(tmp_path / "a", "train")["x"], load(tmp_path / "c", "train")["x"]
    )


def test_no_copies_leaves_the_training_set_as_it_was(dataset_dir, spec, tmp_path):
    report = preprocess(dataset_dir, tmp_path, spec=spec, policy=AugmentPolicy(copies=0))

    train = load(tmp_path, "train")
    assert report.counts["train"] == report.n_train_original == len(train["x"])
    assert not train["augmented"].any()


def test_a_still_policy_copies_images_exactly():
    images = asymmetric_images()

    copies = augment(images, STILL, seed=3)

    np.testing.assert_array_equal(copies, np.repeat(images, 4, axis=0))


def test_horizontal_flip_mirrors_some_copies_only_when_enabled():
    images = asymmetric_images()
    mirrored = images[:, :, ::-1]

    flipped = augment(images, _still(copies=8, flip_horizontal=True), seed=0)
    plain = augment(images, _still(copies=8), seed=0)

    per_image = flipped.reshape(3, 8, 9, 9, 1)
    for i in range(3):
        is_mirror = [np.array_equal(c, mirrored[i]) for c in per_image[i]]
        is_same = [np.array_equal(c, images[i]) for c in per_image[i]]
        assert any(is_mirror) and all(m or s for m, s in zip(is_mirror, is_same, strict=True))
    assert not any(np.array_equal(c, mirrored[i // 8]) for i, c in enumerate(plain))


def test_vertical_flip_turns_copies_upside_down():
    images = asymmetric_images()
    policy = _still(copies=8, flip_vertical=True)

    copies = augment(images, policy, seed=1).reshape(3, 8, 9, 9, 1)

    assert any(np.array_equal(c, images[0, ::-1]) for c in copies[0])


def test_the_border_a_shift_uncovers_is_filled_black():
    white = np.full((2, 10, 10, 1), 255, np.uint8)

    copies = augment(white, _still(translate=0.4), seed=0)

    assert copies.min() == 0 and copies.max() == 255


def test_default_policy_varies_copies_but_keeps_their_shape():
    images = asymmetric_images()

    copies = augment(images, AugmentPolicy(copies=6), seed=0)

    assert copies.shape == (18, 9, 9, 1) and copies.dtype == np.uint8
    assert len({c.tobytes() for c in copies}) == 18


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("copies", -1),
        ("copies", 2.5),
        ("translate", 0.8),
        ("rotate_degrees", -5),
        ("zoom", 1.0),
        ("brightness", "0.1"),
        ("contrast", 2),
        ("flip_horizontal", "yes"),
    ],
)
def test_bad_policy_values_name_the_field_and_the_accepted_range(field, value):
    with pytest.raises(EdgetuneError, match=rf"{field}={value!r}; accepted: "):
        AugmentPolicy.from_dict({field: value})


def test_an_unknown_policy_field_is_named():
    with pytest.raises(EdgetuneError, match="unknown field 'rotation'"):
        AugmentPolicy.from_dict({"rotation": 10})


def test_policy_round_trips_through_a_dict():
    policy = AugmentPolicy(copies=1, zoom=0.2, flip_horizontal=True)

    assert AugmentPolicy.from_dict(policy.to_dict()) == policy
    assert AugmentPolicy.from_dict(None) == AugmentPolicy()


def test_spec_labels_must_be_the_dataset_classes(dataset_dir, spec, tmp_path):
    wrong = dataclasses.replace(spec, labels=("tee", "el", "vee"))

    with pytest.raises(EdgetuneError, match=r"differ from the classes .*\['el', 'tee', 'vee'\]"):
        preprocess(dataset_dir, tmp_path / "out", spec=wrong, policy=AugmentPolicy())
    assert not (tmp_path / "out").exists()


def test_writes_the_spec_the_device_reads_and_a_preview(dataset_dir, tmp_path):
    rgb = PreprocessSpec(
        height=16, width=20, channels=3, scale=2 / 255, offset=-1.0, labels=("el", "tee", "vee")
    )
    policy = AugmentPolicy(copies=2, rotate_degrees=15)

    preprocess(dataset_dir, tmp_path, spec=rgb, policy=policy, seed=5)

    written = json.loads((tmp_path / files.PREPROCESSING_SPEC).read_text())
    assert PreprocessSpec.from_dict(written) == rgb
    assert AugmentPolicy.from_dict(written["augment"]) == policy and written["seed"] == 5
    assert load(tmp_path, "test")["x"].shape[1:] == (16, 20, 3)
    preview = Image.open(tmp_path / files.AUGMENT_PREVIEW)
    # A row per class, each the original and its 2 copies; 20x16 cells enlarged 4x, 4 px gaps.
    assert preview.format == "PNG" and preview.size == (3 * (80 + 4) + 8, 3 * (64 + 4) + 4)


def test_many_small_ingest_shards_give_the_same_arrays(dataset_dir, spec, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_shards, "ROW_GROUP_ROWS", 4)
    monkeypatch.setattr(dataset_shards, "SHARD_BYTES", 1)  # a shard per row group of 4 images
    ingest(str(dataset_dir.parent / "src"), tmp_path / "sharded", min_per_class=3)
    assert len(dataset_shards.shard_paths(tmp_path / "sharded")) > 1

    policy = AugmentPolicy(copies=0)
    preprocess(dataset_dir, tmp_path / "one", spec=spec, policy=policy)
    preprocess(tmp_path / "sharded", tmp_path / "many", spec=spec, policy=policy)
    for split in ("train", "val", "test"):
        one, many = load(tmp_path / "one", split), load(tmp_path / "many", split)
        assert one.keys() == many.keys()
        for key in one:
            np.testing.assert_array_equal(one[key], many[key])
