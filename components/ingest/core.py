"""Ingest: a folder of labelled images, a Parquet table or a manifest becomes one checked, split dataset.

One pass reads and decodes every file; what cannot be used is quarantined by name with the
reason. `ingest_report.json` is then written, listing every problem at once, and only then does
the run stop if the problems are fatal (too many bad files, too few classes or images).

The split of an image is a pure function of its bytes, so re-ingesting a grown folder never
moves an image between splits and identical images can never sit on both sides of the
train/test line. Images stream through in bounded chunks: memory holds metadata, not pixels.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from edgetune import files
from edgetune.components.ingest import report as reporting
from edgetune.components.ingest import shards
from edgetune.components.ingest.examine import ACCEPTED_SCHEMA, Progress, examine_all
from edgetune.components.ingest.report import Findings, IngestReport
from edgetune.components.ingest.sources import LabelRules, Listing, open_source
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import DEFAULT_MAX_PIXELS
from edgetune.step_config import StepConfig

SPLITS = ("train", "val", "test")

__all__ = ["SPLITS", "IngestReport", "IngestStopped", "assign_splits", "ingest", "split_position"]


class IngestConfig(StepConfig):
    """How ingest splits the data and how much bad data it tolerates."""

    step: ClassVar[str] = "ingest"

    val_fraction: float = Field(
        0.15, gt=0, lt=1, description="share of each class's images for validation"
    )
    test_fraction: float = Field(
        0.15, gt=0, lt=1, description="share of each class's images for the test split"
    )
    max_quarantine_fraction: float = Field(
        0.05, ge=0, le=1, description="the run stops when a larger share of images is unusable"
    )
    min_per_class: int = Field(
        5, ge=2, description="the run stops when a class has fewer usable images"
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="an image with more pixels (width x height) is quarantined, never decoded",
    )
    fold_case: bool = Field(False, description="labels differing only in case are one class")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="renames or merges classes: {raw label: class}"
    )

    def label_rules(self) -> LabelRules:
        """The label normalization these settings ask for."""
        return LabelRules(fold_case=self.fold_case, label_map=self.label_map)

    @model_validator(mode="after")
    def _leaves_training_data(self) -> IngestConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"ingest val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g}; "
                "must be < 1 to leave training data"
            )
        return self


class IngestStopped(EdgetuneError):
    """The data has problems that stop the run; the report with every one of them is written."""

    def __init__(self, message: str, report_path: Path) -> None:
        super().__init__(message)
        self.report_path = report_path


def ingest(
    source: str,
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_quarantine_fraction: float = 0.05,
    min_per_class: int = 5,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    label_rules: LabelRules | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Checks, splits and writes a labelled image dataset.

    Args:
        source: a local path or fsspec URI (`memory://`, `s3://`, `gs://`, ...) of a folder
            with one sub-folder per class; a `.parquet` table with columns `image` (encoded
            bytes) and `label` (optionally `path` or `name`); or a manifest, `.csv` or
            `.parquet`, with columns `path` and `label`.
        out_dir: where the dataset (Parquet shards and `dataset_index.json`, see `shards.py`)
            and `ingest_report.json` are written.
        val_fraction: share of each class's content that goes to validation, in (0, 1).
        test_fraction: share that goes to test, in (0, 1); val + test must be < 1.
        max_quarantine_fraction: the run stops when a larger share of images is unusable.
        min_per_class: the run stops when a class has fewer usable images.
        max_pixels: a file with more pixels is quarantined, never decoded.
        label_rules: label normalization (strip, optional case folding, label_map).
        progress: called as `progress(done, total)` while images are read.

    Returns:
        The report, also written to `out_dir/ingest_report.json`.

    Raises:
        IngestStopped: the data has fatal problems; the report is written, the dataset not.
        EdgetuneError: the settings or the source itself are unusable; nothing is written.
    """
    _check_settings(val_fraction, test_fraction, max_quarantine_fraction, min_per_class)
    _check_max_pixels(max_pixels)
    rules = label_rules or LabelRules()
    listing = open_source(source, rules)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards.unpublish(out)  # an earlier dataset here must not pass for this run's
    with tempfile.TemporaryDirectory(prefix=".ingest-", dir=out) as staging:
        accepted_path = Path(staging) / "accepted.parquet"
        accepted, quarantined = examine_all(listing, accepted_path, max_pixels, progress)
        findings = reporting.analyse(accepted, quarantined, listing.classes)
        stops = reporting.problems(findings, listing.total, max_quarantine_fraction, min_per_class)
        splits = assign_splits(
            {r.sha256: r.label for r in findings.kept}, val_fraction, test_fraction
        )
        settings = {
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "max_quarantine_fraction": max_quarantine_fraction,
            "min_per_class": min_per_class,
            "max_pixels": max_pixels,
            "labels": rules.to_dict(),
        }
        report = _report(source, listing, findings, splits, stops, settings)
        report_path = out / files.INGEST_REPORT
        files.write_json(report_path, report.to_dict())
        if stops:
            raise IngestStopped(_stop_line(source, stops, report_path), report_path)
        written = _write_dataset(accepted_path, Path(staging) / "shards", splits, report.classes)
        shards.publish(Path(staging) / "shards", out, written, fingerprint=report.fingerprint)
    return report


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise EdgetuneError(f"ingest max_pixels={max_pixels!r}; accepted: an integer >= 1")


def _stop_line(source: str, stops: list[str], report_path: Path) -> str:
    return f"source {source}: ingest stopped: {'; '.join(stops)}; report: {report_path}"


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


def _report(
    source: str,
    listing: Listing,
    findings: Findings,
    splits: dict[str, str],
    stops: list[str],
    settings: dict,
) -> IngestReport:
    rows = findings.kept
    classes = tuple(findings.class_counts)
    counts = {c: dict.fromkeys(SPLITS, 0) for c in classes}
    for row in rows:
        counts[row.label][splits[row.sha256]] += 1
    totals = Counter(splits[r.sha256] for r in rows)
    quarantined = findings.quarantined
    return IngestReport(
        source=source,
        status="stopped" if stops else "ok",
        problems=tuple(stops),
        fingerprint=dataset_fingerprint((r.sha256, r.label) for r in rows),
        classes=classes,
        class_counts=findings.class_counts,
        counts=counts,
        n_train=totals["train"],
        n_val=totals["val"],
        n_test=totals["test"],
        n_quarantined=len(quarantined),
        quarantined_by_reason=reporting.by_reason(quarantined),
        quarantined=tuple(q.to_dict() for q in quarantined),
        empty_classes=tuple(findings.empty_classes),
        small_classes={
            c: n for c, n in findings.class_counts.items() if n < settings["min_per_class"]
        },
        label_conflicts=tuple(findings.label_conflicts),
        duplicates=tuple(findings.duplicates),
        n_duplicates=len(rows) - len({r.sha256 for r in rows}),
        near_empty=tuple(r.path for r in rows if r.near_empty),
        ignored_files=sum(listing.skipped.values()),
        skipped=dict(sorted(listing.skipped.items())),
        image_sizes=reporting.image_sizes(rows),
        settings=settings,
    )


def _write_dataset(
    accepted_path: Path, staged: Path, splits: dict[str, str], classes: tuple[str, ...]
) -> list[dict]:
    """Writes the accepted images with their split and class index into shards, chunk by chunk.

    Images whose content has a split are kept (label conflicts have none); the rest are dropped.
    Returns the shards written into `staged`.
    """
    index = {c: i for i, c in enumerate(classes)}
    schema = ACCEPTED_SCHEMA.insert(2, pa.field("label_index", pa.int32())).insert(
        3, pa.field("split", pa.string())
    )
    writer = shards.ShardWriter(staged, schema)
    try:
        reader = pq.ParquetFile(accepted_path)
        for batch in reader.iter_batches(batch_size=shards.ROW_GROUP_ROWS):
            rows = batch.to_pydict()
            keep = [i for i, sha in enumerate(rows["sha256"]) if sha in splits]
            columns = {name: [rows[name][i] for i in keep] for name in rows}
            columns["label_index"] = [index[label] for label in columns["label"]]
            columns["split"] = [splits[sha] for sha in columns["sha256"]]
            writer.write(pa.table(columns, schema=schema))
    finally:
        written = writer.close()
    return written


def dataset_fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (content sha256, label) pairs: changes with any image or label."""
    digest = hashlib.sha256()
    for sha, label in sorted(pairs):
        digest.update(f"{sha}\t{label}\n".encode())
    return digest.hexdigest()
