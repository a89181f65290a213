"""Preprocess: the ingested dataset becomes model-sized uint8 arrays, with augmented copies.

Pixels go through `preprocessing.image_bytes_to_pixels`, the function the device agent runs,
so training and serving resize identically. The arrays stay uint8 (normalisation is applied
by whoever feeds the model, from the same spec): a quarter of the size of float32.

Augmentation draws all its random numbers up front from one stateless TensorFlow seed and
applies them in a tf.data pipeline, so the same seed gives byte-identical arrays. Each copy
gets one combined affine warp (rotation, zoom, translation, optional flips) instead of a
chain of layers, so it is resampled once; the uncovered border is filled with 0, the black
background of the digits. Brightness and contrast follow, as in a tf_keras layer stack.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from pydantic import Field

from edgetune import files
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import PreprocessSpec, image_bytes_to_pixels
from edgetune.step_config import StepConfig

SPLITS = ("train", "val", "test")
_BATCH = 256
_PREVIEW_ROWS = 10
_PREVIEW_COPIES = 5
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip file can record
_PREVIEW_CELL = 64  # small images are enlarged to at least this many pixels in the preview

Progress = Callable[[int, int], None]


class AugmentPolicy(StepConfig):
    """How training images are varied. Ranges are symmetric: `rotate_degrees=10` is +-10.

    `translate` and `zoom` are fractions of the image size; `brightness` a fraction of the
    full 0..255 range, added; `contrast` the spread of the factor that scales each channel
    about its mean. Flips are off by default: a mirrored digit is not the same digit.
    Upper bounds keep every warp invertible and every copy recognisable.
    """

    step: ClassVar[str] = "augment policy:"

    copies: int = Field(2, ge=0, le=50, description="augmented copies of each training image")
    translate: float = Field(0.1, ge=0, le=0.5, description="shift, fraction of the image size")
    rotate_degrees: float = Field(10.0, ge=0, le=180, description="rotation, degrees either way")
    zoom: float = Field(0.1, ge=0, le=0.9, description="zoom in or out, fraction of the size")
    brightness: float = Field(0.1, ge=0, le=1, description="added brightness, fraction of 0..255")
    contrast: float = Field(
        0.1, ge=0, le=0.9, description="spread of the per-channel contrast factor"
    )
    flip_horizontal: bool = Field(False, description="mirror left-right")
    flip_vertical: bool = Field(False, description="mirror top-bottom")

    def to_dict(self) -> dict[str, Any]:
        """The policy as a plain mapping (JSON, a KFP dict parameter)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugmentPolicy:
        """A policy from a config mapping; missing fields keep their defaults."""
        d = dict(d or {})
        # A KFP dict parameter travels as a protobuf Struct, where every number is a double.
        if isinstance(d.get("copies"), float) and d["copies"].is_integer():
            d["copies"] = int(d["copies"])
        return cls(**d)


class PreprocessConfig(StepConfig):
    """preprocess's run parameters: the augmentation policy and the seed that draws it."""

    step: ClassVar[str] = "preprocess"

    augment: AugmentPolicy = Field(
        AugmentPolicy(), description="augmentation of the training split (the policy's fields)"
    )
    seed: int = Field(0, ge=0, description="seeds the augmentation")


@dataclass(frozen=True)
class PreprocessReport:
    """What preprocess wrote: examples per split (train includes copies) and array shapes."""

    counts: dict[str, int]
    n_train_original: int
    policy: dict[str, Any]
    seed: int
    shapes: dict[str, list[int]]
    labels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d


def preprocess(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spec: PreprocessSpec,
    policy: AugmentPolicy,
    seed: int = 0,
    progress: Progress | None = None,
) -> PreprocessReport:
    """Writes `train.npz`, `val.npz`, `test.npz`, the spec JSON and an augmentation preview.

    Each `.npz` holds `x` uint8 (N, height, width, channels), `y` int32 (index into
    `spec.labels`) and `augmented` bool. Train holds the originals and `policy.copies`
    augmented copies of each, shuffled with `seed`; val and test are never augmented.

    Args:
        dataset_dir: the folder ingest wrote (`dataset.parquet`).
        out_dir: where the outputs go.
        spec: the model's input size, channels and normalisation; its labels must equal
            the dataset's classes, in order.
        policy: how training images are augmented.
        seed: the same seed gives byte-identical outputs.
        progress: called as `progress(done, total)` while images are decoded.

    Returns:
        The report: counts and shapes per split, the policy and the seed.

    Raises:
        EdgetuneError: the dataset is missing or its classes differ from `spec.labels`.
    """
    table = _read_dataset(Path(dataset_dir), spec)
    pixels = _decode(table, spec, progress)
    arrays = {s: _split_arrays(table, pixels, s) for s in SPLITS}
    originals, labels, _ = arrays["train"]
    copies = augment(originals, policy, seed)
    arrays["train"] = _mix_copies(originals, labels, copies, policy.copies, seed)
    out = Path(out_dir)
    for split, (x, y, augmented) in arrays.items():
        _write_npz(files.split_file(out, split), x, y, augmented)
    with files.atomic_path(out / files.AUGMENT_PREVIEW) as tmp:
        render_preview(originals, labels, copies, policy.copies).save(tmp, format="PNG")
    spec_doc = {**spec.to_dict(), "augment": policy.to_dict(), "seed": seed}
    files.write_json(out / files.PREPROCESSING_SPEC, spec_doc)
    return PreprocessReport(
        counts={s: len(arrays[s][0]) for s in SPLITS},
        n_train_original=len(originals),
        policy=policy.to_dict(),
        seed=seed,
        shapes={s: list(arrays[s][0].shape) for s in SPLITS},
        labels=spec.labels,
    )


def _read_dataset(dataset_dir: Path, spec: PreprocessSpec) -> Any:
    path = dataset_dir / files.DATASET_PARQUET
    if not path.is_file():
        raise EdgetuneError(f"{path}: not found; preprocess reads the dataset ingest writes")
    table = pq.read_table(path, columns=["path", "label", "label_index", "split", "image"])
    indices, names = table.column("label_index").to_pylist(), table.column("label").to_pylist()
    classes = [label for _, label in sorted(set(zip(indices, names, strict=True)))]
    if tuple(classes) != spec.labels:
        raise EdgetuneError(
            f"preprocessing spec labels {list(spec.labels)} differ from the classes of {path} "
            f"{classes}; build the spec from the dataset's classes, in this order"
        )
    return table


def _decode(table: Any, spec: PreprocessSpec, progress: Progress | None) -> np.ndarray:
    pixels = np.empty((table.num_rows, spec.height, spec.width, spec.channels), np.uint8)
    rows = zip(table.column("path").to_pylist(), table.column("image").to_pylist(), strict=True)
    for i, (path, data) in enumerate(rows):
        pixels[i] = image_bytes_to_pixels(data, spec, source=path)
        if progress is not None:
            progress(i + 1, table.num_rows)
    return pixels


def _split_arrays(
    table: Any, pixels: np.ndarray, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = np.asarray(table.column("split").to_pylist()) == split
    y = np.asarray(table.column("label_index").to_numpy(), dtype=np.int32)[mask]
    return pixels[mask], y, np.zeros(len(y), dtype=bool)


def _mix_copies(
    x: np.ndarray, y: np.ndarray, copies: np.ndarray, n_copies: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_all = np.concatenate([x, copies])
    y_all = np.concatenate([y, np.repeat(y, n_copies)]).astype(np.int32)
    augmented = np.concatenate([np.zeros(len(x), bool), np.ones(len(copies), bool)])
    order = np.random.default_rng(seed).permutation(len(x_all))
    return x_all[order], y_all[order], augmented[order]


def _write_npz(path: Path, x: np.ndarray, y: np.ndarray, augmented: np.ndarray) -> None:
    # Written member by member with a fixed timestamp (np.savez stamps the current time), so
    # the same inputs and seed give the same file bytes, not just the same arrays.
    with files.atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in (("x", x), ("y", y), ("augmented", augmented)):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def augment(images: np.ndarray, policy: AugmentPolicy, seed: int) -> np.ndarray:
    """Returns `policy.copies` augmented copies of each image, image-major.

    Args:
        images: uint8 (N, H, W, C).
        policy: the ranges of the random transforms.
        seed: the stateless seed; equal seeds give byte-identical copies.

    Returns:
        uint8 (N * copies, H, W, C); copies of image i are rows i*copies .. i*copies+copies-1.
    """
    n_out = len(images) * policy.copies
    if n_out == 0:
        return np.zeros((0, *images.shape[1:]), np.uint8)
    import tensorflow as tf  # heavy: imported only when there is work to do

    height, width = images.shape[1:3]
    sources = np.repeat(images, policy.copies, axis=0)
    # One draw for every copy, fixed by the seed alone: no hidden RNG state, no thread order.
    draws = tf.random.stateless_uniform([n_out, 8], seed=[seed, 0], minval=-1.0, maxval=1.0)
    params = _augment_params(tf, draws, policy, height, width)
    dataset = (
        tf.data.Dataset.from_tensor_slices((sources, params))
        .batch(_BATCH)
        .map(
            lambda x, p: _apply(tf, x, p, height, width),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    )
    return np.concatenate([batch.numpy() for batch in dataset])


def _augment_params(tf: Any, u: Any, policy: AugmentPolicy, height: int, width: int) -> Any:
    """Turns uniform draws in [-1, 1) into per-copy warp and colour parameters."""

    def flip(draw: Any, enabled: bool) -> Any:
        return tf.where(draw < 0, -1.0, 1.0) if enabled else tf.ones_like(draw)

    return tf.stack(
        [
            u[:, 0] * math.radians(policy.rotate_degrees),
            1.0 + u[:, 1] * policy.zoom,
            u[:, 2] * policy.translate * width,
            u[:, 3] * policy.translate * height,
            flip(u[:, 4], policy.flip_horizontal),
            flip(u[:, 5], policy.flip_vertical),
            u[:, 6] * policy.brightness * 255.0,
            1.0 + u[:, 7] * policy.contrast,
        ],
        axis=1,
    )


def _apply(tf: Any, images: Any, params: Any, height: int, width: int) -> Any:
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=_inverse_warps(tf, params, height, width),
        output_shape=[height, width],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    # Colour after the warp, so the uncovered border shifts with the rest of the background.
    # Rounding first makes the mean a sum of whole numbers: exact in float64 in any order, so
    # the bytes do not depend on how many threads the reduction used.
    x = tf.round(warped)
    mean = tf.cast(tf.reduce_mean(tf.cast(x, tf.float64), axis=[1, 2], keepdims=True), tf.float32)
    contrast, brightness = params[:, 7, None, None, None], params[:, 6, None, None, None]
    x = (x - mean) * contrast + mean + brightness
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)


def _inverse_warps(tf: Any, params: Any, height: int, width: int) -> Any:
    """Rows [a0 a1 a2 b0 b1 b2 0 0] mapping each output pixel back to where it is sampled.

    The forward warp about the centre c is `out = c + t + R(angle) S(scale * flip) (in - c)`;
    the op wants its inverse, `in = c + S^-1 R(-angle) (out - c - t)`.
    """
    angle, scale, tx, ty, fx, fy = (params[:, i] for i in range(6))
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0, a1 = cos / (scale * fx), sin / (scale * fx)
    b0, b1 = -sin / (scale * fy), cos / (scale * fy)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    ox, oy = cx + tx, cy + ty
    zeros = tf.zeros_like(angle)
    rows = [a0, a1, cx - a0 * ox - a1 * oy, b0, b1, cy - b0 * ox - b1 * oy, zeros, zeros]
    return tf.stack(rows, axis=1)


def render_preview(
    originals: np.ndarray, labels: np.ndarray, copies: np.ndarray, n_copies: int
) -> Image.Image:
    """A grid: one row per class (up to 10), its first original then up to 5 augmented copies.

    `copies` is laid out as `augment` returns it: the copies of original i are rows
    i*n_copies .. (i+1)*n_copies - 1. A wider gap separates the originals from the copies.
    """
    height, width, channels = originals.shape[1:]
    zoom = max(1, math.ceil(_PREVIEW_CELL / max(height, width)))
    cell_w, cell_h, gap = width * zoom, height * zoom, 4
    picks = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)][:_PREVIEW_ROWS]
    shown = min(n_copies, _PREVIEW_COPIES)
    size = ((1 + shown) * (cell_w + gap) + 2 * gap, max(1, len(picks)) * (cell_h + gap) + gap)
    grid = Image.new("RGB", size, (96, 96, 96))
    for row, i in enumerate(picks):
        cells = [originals[i], *copies[i * n_copies : i * n_copies + shown]]
        for col, pixels in enumerate(cells):
            tile = Image.fromarray(pixels[..., 0] if channels == 1 else pixels).convert("RGB")
            tile = tile.resize((cell_w, cell_h), Image.Resampling.NEAREST)
            x = gap + col * (cell_w + gap) + (gap if col else 0)
            grid.paste(tile, (x, gap + row * (cell_h + gap)))
    return grid
