"""Artifact file names and atomic writes.

Every file a component hands on is named here once. Writes go to a temporary name in the
same directory and are renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ingest
DATASET_SHARD = "dataset-{index:05d}.parquet"  # encoded images, split and label per row
DATASET_INDEX = "dataset_index.json"  # the shard set, written last: without it, incomplete
INGEST_REPORT = "ingest_report.json"
# select_model
SELECTION = "selection.json"
# preprocess
SPLIT_FILE = "{split}.npz"
PREPROCESSING_SPEC = "preprocessing.json"
AUGMENT_PREVIEW = "augment_preview.png"
PREPROCESS_REPORT = "preprocess_report.json"
# fine_tune / prune / qat
KERAS_MODEL = "model.h5"
TRAIN_REPORT = "train_report.json"
# convert
TFLITE_MODEL = "model.tflite"
CONVERT_REPORT = "convert_report.json"
CANDIDATE = "candidate.json"
SEARCH_REPORT = "search.json"
PARETO_PNG = "pareto.png"
# evaluate
EVALUATION = "evaluation.json"
CONFUSION_PNG = "confusion_{stage}.png"
# deploy
DEPLOY_REPORT = "deploy_report.json"
BUNDLE = "bundle-{version}.tar"
# any run
SUMMARY = "summary.json"


def artifact_dir(artifact_path: str | os.PathLike) -> Path:
    """A KFP output artifact used as a folder: created on first use."""
    path = Path(artifact_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def split_file(directory: str | os.PathLike, split: str) -> Path:
    """The path of `split`'s arrays (.npz) in a preprocessed data folder."""
    return Path(directory) / SPLIT_FILE.format(split=split)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, sync: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` on success.

    On an exception the temporary file is removed and `target` is left as it was. With
    `sync`, the content is flushed to the disk before the rename (for state that must
    survive a power cut).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should read like any other
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if sync:
            fd = os.open(tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike, data: bytes, *, sync: bool = False) -> Path:
    """Writes `data` to `target` atomically (see `atomic_path`)."""
    with atomic_path(target, sync=sync) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json(target: str | os.PathLike, obj: Any, *, sync: bool = False) -> Path:
    """Writes `obj` as indented JSON to `target` atomically (see `atomic_path`)."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_bytes(target, text.encode(), sync=sync)


def read_json(path: str | os.PathLike) -> Any:
    """The parsed JSON content of `path`."""
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary directory beside `target`; moves it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` and flushes it to the disk (fsync) before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a folder's entries (new names, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's content, read in chunks by `hashlib.file_digest`."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def gzip_size(data: bytes) -> int:
    """Bytes after gzip at maximum compression: what pruning's zeros save on the wire."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the usual guests in a metrics dict.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
