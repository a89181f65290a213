"""Ingest: a folder of labelled images or a Parquet table becomes one checked, split dataset.

Every image is decoded once; what cannot be used is quarantined by name with the reason,
and the run stops only when too much of the data is bad. The split of an image is a pure
function of its bytes, so re-ingesting a grown folder never moves an image between splits
and identical images can never sit on both sides of the train/test line.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from edgetune import files
from edgetune.components.ingest.sources import Item, Listing, open_source
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import ImageDecodeError, decode_image

SPLITS = ("train", "val", "test")
# Reads overlap network latency on s3:// and gs://; Pillow releases the GIL while it inflates.
_WORKERS = 8

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestReport:
    """What ingest accepted, how it split it, and what it refused and why."""

    source: str
    fingerprint: str
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    n_train: int
    n_val: int
    n_test: int
    n_quarantined: int
    quarantined: tuple[dict[str, str], ...]
    ignored_files: int
    image_sizes: dict[str, Any]
    n_duplicates: int
    val_fraction: float
    test_fraction: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["quarantined"] = [dict(q) for q in self.quarantined]
        return d


@dataclass(frozen=True)
class _Row:
    path: str
    label: str
    sha256: str
    width: int
    height: int
    mode: str
    format: str
    image: bytes


def ingest(
    source: str,
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_quarantine_fraction: float = 0.05,
    min_per_class: int = 5,
    progress: Progress | None = None,
) -> IngestReport:
    """Checks, splits and writes a labelled image dataset.

    Args:
        source: a local path or fsspec URI (`memory://`, `s3://`, `gs://`, ...) of either a
            folder with one sub-folder per class, or a `.parquet` file with columns `image`
            (encoded bytes) and `label`, and optionally `path` or `name`.
        out_dir: where `dataset.parquet` and `ingest_report.json` are written.
        val_fraction: share of each class's content that goes to validation, in (0, 1).
        test_fraction: share that goes to test, in (0, 1); val + test must be < 1.
        max_quarantine_fraction: the run stops when a larger share of images is unusable.
        min_per_class: the run stops when a class has fewer usable images.
        progress: called as `progress(done, total)` while images are read.

    Returns:
        The report, also written to `out_dir/ingest_report.json`.

    Raises:
        EdgetuneError: one line naming the cause. Nothing is written to `out_dir` then.
    """
    _check_settings(val_fraction, test_fraction, max_quarantine_fraction, min_per_class)
    listing = open_source(source)
    rows, quarantined = _examine_all(listing, progress)
    rows, conflicts = _drop_conflicting_labels(rows)
    quarantined += conflicts
    _check_quarantine(source, len(rows), quarantined, max_quarantine_fraction)
    _check_classes(source, listing.classes, rows, min_per_class)
    splits = assign_splits({r.sha256: r.label for r in rows}, val_fraction, test_fraction)
    rows = sorted(rows, key=lambda r: (r.label, r.path))
    report = _report(source, listing, rows, splits, quarantined, val_fraction, test_fraction)
    _write(Path(out_dir), rows, splits, report.classes)
    files.write_json(Path(out_dir) / files.INGEST_REPORT, report.to_dict())
    return report


def split_position(sha256: str) -> float:
    """The content hash as a number in [0, 1): where the image falls among the splits."""
    return int(sha256[:16], 16) / 2**64


def assign_splits(
    labels_by_content: dict[str, str], val_fraction: float, test_fraction: float
) -> dict[str, str]:
    """Maps each content hash to its split: test below `test_fraction`, then val, then train.

    Every class with at least 3 distinct images gets at least one in each split: for an
    empty split, the image whose hash lies nearest that split's interval is moved into it.
    That adjustment is the only case where a split depends on the other images: when the
    class later grows and fills the split by hash, the moved image returns to its own split.
    """
    bounds = {"test": (0.0, test_fraction), "val": (test_fraction, test_fraction + val_fraction)}
    bounds["train"] = (test_fraction + val_fraction, 1.0)
    splits = {
        sha: next(s for s, (_, hi) in bounds.items() if split_position(sha) < hi)
        for sha in labels_by_content
    }
    by_class: dict[str, list[str]] = defaultdict(list)
    for sha, label in labels_by_content.items():
        by_class[label].append(sha)
    for shas in by_class.values():
        if len(shas) >= 3:
            _fill_empty_splits(sorted(shas), splits, bounds)
    return splits


def _fill_empty_splits(
    shas: list[str], splits: dict[str, str], bounds: dict[str, tuple[float, float]]
) -> None:
    # Test first, then val: with every image in train, the lowest positions are the nearest.
    for split in ("test", "val", "train"):
        sizes = Counter(splits[sha] for sha in shas)
        if sizes[split]:
            continue
        lo, hi = bounds[split]
        # Only a split with two or more images may give one away, so no split is emptied.
        donors = [sha for sha in shas if sizes[splits[sha]] >= 2]
        nearest = min(
            donors, key=lambda sha: max(lo - split_position(sha), split_position(sha) - hi)
        )
        splits[nearest] = split


def _check_settings(val: float, test: float, max_quarantine: float, min_per_class: int) -> None:
    for name, value in (("val_fraction", val), ("test_fraction", test)):
        if not 0 < value < 1:
            raise EdgetuneError(f"ingest {name}={value}; accepted: 0 < {name} < 1")
    if val + test >= 1:
        raise EdgetuneError(
            f"ingest val_fraction + test_fraction = {val + test:g}; "
            "must be < 1 to leave training data"
        )
    if not 0 <= max_quarantine <= 1:
        raise EdgetuneError(f"ingest max_quarantine_fraction={max_quarantine}; accepted: 0 to 1")
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, int) or min_per_class < 1:
        raise EdgetuneError(f"ingest min_per_class={min_per_class!r}; accepted: an integer >= 1")


def _examine_all(
    listing: Listing, progress: Progress | None
) -> tuple[list[_Row], list[dict[str, str]]]:
    rows: list[_Row] = []
    quarantined: list[dict[str, str]] = []
    total = len(listing.entries)
    with ThreadPoolExecutor(_WORKERS) as pool:
        results = pool.map(lambda entry: _examine(listing.load(entry)), listing.entries)
        for done, result in enumerate(results, start=1):
            if isinstance(result, _Row):
                rows.append(result)
            else:
                quarantined.append(result)
            if progress is not None:
                progress(done, total)
    return rows, quarantined


def _examine(item: Item) -> _Row | dict[str, str]:
    if item.error is not None:
        return {"file": item.path, "reason": item.error}
    if item.label is None:
        return {"file": item.path, "reason": "no label"}
    try:
        image = decode_image(item.data, item.path)
    except ImageDecodeError as e:
        return {"file": item.path, "reason": str(e).removeprefix(f"{item.path}: ")}
    except Image.DecompressionBombError as e:
        return {"file": item.path, "reason": f"image too large ({e})"}
    sha = hashlib.sha256(item.data).hexdigest()
    width, height = image.size
    return _Row(item.path, item.label, sha, width, height, image.mode, image.format, item.data)


def _drop_conflicting_labels(rows: list[_Row]) -> tuple[list[_Row], list[dict[str, str]]]:
    labels: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        labels[row.sha256].add(row.label)
    kept = [r for r in rows if len(labels[r.sha256]) == 1]
    conflicts = [
        {
            "file": r.path,
            "reason": "same content labelled " + " and ".join(sorted(labels[r.sha256])),
        }
        for r in rows
        if len(labels[r.sha256]) > 1
    ]
    return kept, conflicts


def _check_quarantine(
    source: str, n_accepted: int, quarantined: list[dict[str, str]], threshold: float
) -> None:
    total = n_accepted + len(quarantined)
    share = len(quarantined) / total
    if share > threshold:
        first = "; ".join(f"{q['file']} ({q['reason']})" for q in quarantined[:3])
        raise EdgetuneError(
            f"source {source}: {len(quarantined)} of {total} images ({share:.1%}) are unusable, "
            f"above max_quarantine_fraction={threshold:g}; nothing written; first: {first}"
        )


def _check_classes(
    source: str, listed: tuple[str, ...], rows: list[_Row], min_per_class: int
) -> None:
    sizes = Counter(r.label for r in rows)
    classes = sorted(set(listed) | set(sizes))
    if len(classes) < 2:
        raise EdgetuneError(
            f"source {source}: only one class ({', '.join(classes)}); a classifier needs at least 2"
        )
    short = [f"{c!r} has {sizes[c]}" for c in classes if sizes[c] < min_per_class]
    if short:
        raise EdgetuneError(
            f"source {source}: class {', '.join(short)} usable images; "
            f"min_per_class={min_per_class}"
        )


def _report(
    source: str,
    listing: Listing,
    rows: list[_Row],
    splits: dict[str, str],
    quarantined: list[dict[str, str]],
    val_fraction: float,
    test_fraction: float,
) -> IngestReport:
    classes = tuple(sorted({r.label for r in rows}))
    counts = {c: dict.fromkeys(SPLITS, 0) for c in classes}
    for row in rows:
        counts[row.label][splits[row.sha256]] += 1
    totals = Counter(splits[r.sha256] for r in rows)
    return IngestReport(
        source=source,
        fingerprint=dataset_fingerprint((r.sha256, r.label) for r in rows),
        classes=classes,
        counts=counts,
        n_train=totals["train"],
        n_val=totals["val"],
        n_test=totals["test"],
        n_quarantined=len(quarantined),
        quarantined=tuple(quarantined),
        ignored_files=listing.ignored,
        image_sizes=_image_sizes(rows),
        n_duplicates=len(rows) - len({r.sha256 for r in rows}),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def dataset_fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (content sha256, label) pairs: changes with any image or label."""
    digest = hashlib.sha256()
    for sha, label in sorted(pairs):
        digest.update(f"{sha}\t{label}\n".encode())
    return digest.hexdigest()


def _image_sizes(rows: list[_Row]) -> dict[str, Any]:
    widths, heights = [r.width for r in rows], [r.height for r in rows]
    return {
        "min_width": min(widths),
        "max_width": max(widths),
        "min_height": min(heights),
        "max_height": max(heights),
        "modes": sorted({r.mode for r in rows}),
        "formats": sorted({r.format for r in rows}),
    }


def _write(
    out_dir: Path, rows: list[_Row], splits: dict[str, str], classes: tuple[str, ...]
) -> None:
    index = {c: i for i, c in enumerate(classes)}
    table = pa.table(
        {
            "path": pa.array([r.path for r in rows], pa.string()),
            "label": pa.array([r.label for r in rows], pa.string()),
            "label_index": pa.array([index[r.label] for r in rows], pa.int32()),
            "split": pa.array([splits[r.sha256] for r in rows], pa.string()),
            "sha256": pa.array([r.sha256 for r in rows], pa.string()),
            "width": pa.array([r.width for r in rows], pa.int32()),
            "height": pa.array([r.height for r in rows], pa.int32()),
            "mode": pa.array([r.mode for r in rows], pa.string()),
            "image": pa.array([r.image for r in rows], pa.binary()),
        }
    )
    with files.atomic_path(out_dir / files.DATASET_PARQUET) as tmp:
        pq.write_table(table, tmp)
