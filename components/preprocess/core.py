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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import Field

from edgetune import files
from edgetune.components.common.outputs import StepOutput
from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.preprocess.augment import augment
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import PreprocessSpec, image_bytes_to_pixels
from edgetune.step_config import StepConfig

if TYPE_CHECKING:
    from edgetune.zoo.registry import ZooEntry

SPLITS = ("train", "val", "test")
_BATCH = 256  # images decoded at a time (ingest's row group)
_DECODE_WORKERS = 4
# Above this many bytes of decoded uint8 arrays (copies included), preprocess writes shards
# that training streams, instead of .npz arrays it loads whole. Measured at 20k images of
# 96x96x3 with 2 copies (1.2 GB of arrays): preprocess peaked at 4.9 GB and a training
# process at 13.8 GB (float32 arrays, copied into tf.data). Below this limit the arrays give
# the fastest epochs at a peak of a few GB; above it, shards keep memory flat.
DEFAULT_IN_MEMORY_BYTES = 256 * 2**20
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
class PreprocessReport(StepOutput):
    """What preprocess wrote: examples per split (train includes copies) and array shapes."""

    FILE: ClassVar[str] = files.PREPROCESS_REPORT
    ATTACHMENTS: ClassVar[tuple[str, ...]] = (files.PREPROCESSING_SPEC, files.AUGMENT_PREVIEW)

    counts: dict[str, int]
    n_train_original: int
    policy: dict[str, Any]
    seed: int
    shapes: dict[str, list[int]]
    labels: tuple[str, ...]
    storage: str = "npz"  # or "tfrecord": shards streamed by the training reader

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (the labels as a list)."""
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessReport:
        """The report from preprocess_report.json's content."""
        return cls(**{**d, "labels": tuple(d["labels"])})

    def metrics(self) -> dict[str, float]:
        """The examples per split as `n_<split>`."""
        return {f"n_{split}": n for split, n in self.counts.items()}

    def metadata(self) -> dict[str, Any]:
        """The examples per split and the model's input shape."""
        return {"counts": self.counts, "input_shape": self.shapes["train"][1:]}


def model_spec(entry: ZooEntry, classes: Sequence[str]) -> PreprocessSpec:
    """What the device applies before the model: the entry's input size and normalisation."""
    height, width, channels = entry.input_shape
    return PreprocessSpec(
        height=height, width=width, channels=channels, labels=tuple(classes), **entry.normalization
    )


def preprocess(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spec: PreprocessSpec,
    policy: AugmentPolicy,
    seed: int = 0,
    progress: Progress | None = None,
    max_in_memory_bytes: int = DEFAULT_IN_MEMORY_BYTES,
) -> PreprocessReport:
    """Writes the model-sized splits, the spec JSON and an augmentation preview.

    Small data (all arrays, copies included, within `max_in_memory_bytes`) is written as
    `train.npz`, `val.npz`, `test.npz`: `x` uint8 (N, height, width, channels), `y` int32
    (index into `spec.labels`) and `augmented` bool. Train holds the originals and
    `policy.copies` augmented copies of each, shuffled with `seed`.

    Larger data streams: images are decoded a row group at a time into TFRecord shards
    (`shards.py`), and the training reader augments on the fly; memory does not grow with
    the data set. Val and test are never augmented.

    Args:
        dataset_dir: the folder ingest wrote (Parquet shards listed by `dataset_index.json`).
        out_dir: where the outputs go.
        spec: the model's input size, channels and normalisation; its labels must equal
            the dataset's classes, in order.
        policy: how training images are augmented.
        seed: the same seed gives byte-identical outputs.
        progress: called as `progress(done, total)` while images are decoded.
        max_in_memory_bytes: the largest decoded size kept in memory as `.npz` arrays.

    Returns:
        The report: counts and shapes per split, the policy, the seed and the storage.

    Raises:
        EdgetuneError: the dataset is missing or its classes differ from `spec.labels`.
    """
    meta = _read_dataset(Path(dataset_dir), spec)
    n_train = int(np.sum(meta["split"] == "train"))
    decoded_bytes = spec.height * spec.width * spec.channels
    decoded_bytes *= len(meta["split"]) + n_train * policy.copies
    out = Path(out_dir)
    batches = decode_batches(Path(dataset_dir), spec, progress)
    if decoded_bytes <= max_in_memory_bytes:
        report = _in_memory(batches, meta, out, spec, policy, seed)
    else:
        from edgetune.components.preprocess import shards

        written = shards.write_shards(batches, meta["split"], out, policy, seed)
        report = PreprocessReport(
            counts=written.counts,
            n_train_original=n_train,
            policy=policy.to_dict(),
            seed=seed,
            shapes={
                s: [n, spec.height, spec.width, spec.channels] for s, n in written.counts.items()
            },
            labels=spec.labels,
            storage="tfrecord",
        )
        _write_preview(out, *written.preview, policy, seed)
    spec_doc = {**spec.to_dict(), "augment": policy.to_dict(), "seed": seed}
    spec_doc |= {"storage": report.storage, "counts": report.counts}
    files.write_json(out / files.PREPROCESSING_SPEC, spec_doc)
    return report


def _in_memory(
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    meta: dict[str, np.ndarray],
    out: Path,
    spec: PreprocessSpec,
    policy: AugmentPolicy,
    seed: int,
) -> PreprocessReport:
    pixels = np.empty((len(meta["split"]), spec.height, spec.width, spec.channels), np.uint8)
    start = 0
    for x, _ in batches:
        pixels[start : start + len(x)] = x
        start += len(x)
    arrays = {s: _split_arrays(meta, pixels, s) for s in SPLITS}
    originals, labels, _ = arrays["train"]
    copies = augment(originals, policy, seed)
    arrays["train"] = _mix_copies(originals, labels, copies, policy.copies, seed)
    for split, (x, y, augmented) in arrays.items():
        _write_npz(files.split_file(out, split), x, y, augmented)
    _write_preview(out, originals, labels, policy, seed, copies)
    return PreprocessReport(
        counts={s: len(arrays[s][0]) for s in SPLITS},
        n_train_original=len(originals),
        policy=policy.to_dict(),
        seed=seed,
        shapes={s: list(arrays[s][0].shape) for s in SPLITS},
        labels=spec.labels,
    )


def _write_preview(
    out: Path,
    originals: np.ndarray,
    labels: np.ndarray,
    policy: AugmentPolicy,
    seed: int,
    copies: np.ndarray | None = None,
) -> None:
    if copies is None:
        copies = augment(originals, policy, seed)
    with files.atomic_path(out / files.AUGMENT_PREVIEW) as tmp:
        render_preview(originals, labels, copies, policy.copies).save(tmp, format="PNG")


def _read_dataset(dataset_dir: Path, spec: PreprocessSpec) -> dict[str, np.ndarray]:
    """The dataset's small columns (`label_index`, `split`), its classes checked."""
    table = dataset_shards.read_columns(dataset_dir, ["label", "label_index", "split"])
    indices, names = table.column("label_index").to_pylist(), table.column("label").to_pylist()
    classes = [label for _, label in sorted(set(zip(indices, names, strict=True)))]
    if tuple(classes) != spec.labels:
        raise EdgetuneError(
            f"preprocessing spec labels {list(spec.labels)} differ from the classes of the dataset "
            f"{dataset_dir} "
            f"{classes}; build the spec from the dataset's classes, in this order"
        )
    meta = {
        "label_index": np.asarray(indices, dtype=np.int32),
        "split": np.asarray(table.column("split").to_pylist(), dtype=object),
    }
    return meta


def decode_batches(
    dataset_dir: Path, spec: PreprocessSpec, progress: Progress | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields `(pixels, label_index)` a row group at a time, shard after shard, in order.

    Decoding runs on a few threads: Pillow releases the GIL while it inflates and resizes.
    """
    total, done = dataset_shards.num_rows(dataset_dir), 0
    columns = ["path", "label_index", "image"]
    with ThreadPoolExecutor(_DECODE_WORKERS) as pool:
        for batch in dataset_shards.iter_batches(dataset_dir, columns, _BATCH):
            names, images = batch.column("path").to_pylist(), batch.column("image")

            def decode(i: int, names: list = names, images: Any = images) -> np.ndarray:
                return image_bytes_to_pixels(images[i].as_py(), spec, source=names[i])

            pixels = np.stack(list(pool.map(decode, range(len(names)))))
            done += len(names)
            if progress is not None:
                progress(done, total)
            yield pixels, batch.column("label_index").to_numpy().astype(np.int32)


def _split_arrays(
    meta: dict[str, np.ndarray], pixels: np.ndarray, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = meta["split"] == split
    y = meta["label_index"][mask]
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
