"""Where ingest's images come from: a folder of class sub-folders, a Parquet table, a manifest.

Local paths and fsspec URIs alike; nothing here decodes an image. A source is listed up front
(names only) and read in bounded chunks, so a large one never sits in memory whole.

Labels are strings after one normalization (`LabelRules`): surrounding whitespace stripped,
optionally case-folded, then renamed or merged by `label_map`.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

from edgetune.errors import EdgetuneError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TABLE_EXTENSIONS = (".parquet", ".csv")
# Files operating systems and archivers leave behind: skipped and counted, never quarantined.
_SYSTEM_FILES = {"__MACOSX": "__MACOSX", "Thumbs.db": "Thumbs.db", ".DS_Store": ".DS_Store"}
CHUNK = 256  # images read (and held) at a time


@dataclass(frozen=True)
class LabelRules:
    """How a raw label becomes a class name: strip, optionally case-fold, then `label_map`.

    `label_map` keys are normalized the same way before lookup, so `{"Three": "3"}` also
    maps " three " when `fold_case` is set.
    """

    fold_case: bool = False
    label_map: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.label_map.items():
            if not str(key).strip() or not str(value).strip():
                raise EdgetuneError(
                    f"label_map entry {key!r}: {value!r}; keys and values must be non-empty"
                )

    def _normal(self, value: object) -> str:
        text = str(value).strip()
        return text.casefold() if self.fold_case else text

    def apply(self, raw: object) -> str | None:
        """The class name for a raw label, or None when there is none (empty or missing)."""
        if raw is None:
            return None
        label = self._normal(raw)
        if not label:
            return None
        mapped = {self._normal(k): str(v).strip() for k, v in self.label_map.items()}
        return mapped.get(label, label)

    def to_dict(self) -> dict[str, Any]:
        """The rules as recorded in the ingest report."""
        return {"strip": True, "fold_case": self.fold_case, "label_map": dict(self.label_map)}


@dataclass(frozen=True)
class Item:
    """One image to examine: its bytes, or the error met while reading them."""

    path: str  # relative to the source, printable (undecodable bytes escaped)
    label: str | None
    data: bytes = b""
    error: str | None = None


@dataclass(frozen=True)
class Listing:
    """A source's images, listed but not yet read.

    `chunks()` yields lists of entries, `load(entry)` reads one (on worker threads).
    """

    kind: str  # "folder", "parquet" or "manifest"
    total: int
    chunks: Callable[[], Iterator[list[Any]]]
    load: Callable[[Any], Item]
    classes: tuple[str, ...]  # includes class folders that hold no image
    skipped: dict[str, int]


def printable(name: str) -> str:
    r"""A file name as text that always encodes: bytes that are not UTF-8 become `\xNN`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def open_fs(source: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path of a local path or fsspec URI, or an error naming it."""
    if not source.strip():
        raise EdgetuneError("source is empty; give a folder, a .parquet/.csv file or a URI")
    try:
        fs, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as e:
        raise EdgetuneError(f"source {source}: {e}") from None
    if not fs.exists(root):
        raise EdgetuneError(f"source {source}: not found")
    return fs, root


def open_source(source: str, rules: LabelRules | None = None) -> Listing:
    """Lists a source's images (read lazily, in chunks) and its class names."""
    from edgetune.components.ingest import tables

    rules = rules or LabelRules()
    fs, root = open_fs(source)
    if fs.isdir(root):
        return _list_folder(fs, root.rstrip("/"), source, rules)
    if root.lower().endswith(TABLE_EXTENSIONS):
        return tables.open_table(fs, root, source, rules)
    raise EdgetuneError(f"source {source}: not a folder, a .parquet file or a .csv manifest")


def skip_reason(name: str) -> str | None:
    """Why a path is skipped without being examined (system or hidden file), else None."""
    parts = [p for p in name.split("/") if p]
    for part in parts:
        if part in _SYSTEM_FILES:
            return _SYSTEM_FILES[part]
    if any(part.startswith(".") for part in parts):
        return "hidden"
    return None


def class_folders(
    fs: fsspec.AbstractFileSystem, root: str, source: str, skipped: Counter
) -> list[str]:
    """The class sub-folders of `root`; loose and system files are counted in `skipped`."""
    class_dirs = []
    for entry in fs.ls(root, detail=True):
        name = entry["name"].rstrip("/")
        reason = skip_reason(posixpath.basename(name))
        if reason:
            skipped[reason] += 1
        elif entry["type"] == "directory":
            class_dirs.append(name)
        else:
            skipped["not in a class folder"] += 1
    if not class_dirs:
        raise EdgetuneError(
            f"source {source}: no class sub-folders; expected one folder per class, "
            f"e.g. {source.rstrip('/')}/cat/001.png"
        )
    return sorted(class_dirs)


def image_files(
    fs: fsspec.AbstractFileSystem, root: str, class_dir: str, skipped: Counter
) -> list[str]:
    """The image files anywhere under `class_dir`, in order; the rest counted in `skipped`."""
    found = []
    for path in sorted(fs.find(class_dir)):
        rel = posixpath.relpath(path, root)
        reason = skip_reason(rel)
        if reason:
            skipped[reason] += 1
        elif rel.lower().endswith(IMAGE_EXTENSIONS):
            found.append(path)
        else:
            skipped["not an image file"] += 1
    return found


def _list_folder(
    fs: fsspec.AbstractFileSystem, root: str, source: str, rules: LabelRules
) -> Listing:
    skipped: Counter = Counter()
    class_dirs = class_folders(fs, root, source, skipped)
    found = [path for d in class_dirs for path in image_files(fs, root, d, skipped)]
    if not found:
        raise EdgetuneError(
            f"source {source}: the class folders hold no images ({', '.join(IMAGE_EXTENSIONS)})"
        )

    def read(path: str) -> Item:
        rel = printable(posixpath.relpath(path, root))
        label = rules.apply(rel.split("/", 1)[0])
        try:
            return Item(rel, label, fs.cat_file(path))
        except OSError as e:
            return Item(rel, label, error=f"cannot read ({e})")

    names = {rules.apply(printable(posixpath.basename(d))) for d in class_dirs}
    classes = tuple(sorted(c for c in names if c is not None))
    return Listing("folder", len(found), lambda: chunked(found), read, classes, dict(skipped))


def chunked(entries: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """`entries` in consecutive lists of at most `size`, so a pass holds one chunk at a time."""
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def quick_check(source: str, *, min_per_class: int = 1, rules: LabelRules | None = None) -> dict:
    """The checks that take a second or two, before anything else starts.

    The source exists and is readable; a folder has at least 2 class folders holding image
    files, a table or manifest has the right columns; every class has `min_per_class` files
    (counted, not decoded: ingest's full check may still quarantine some).

    Returns:
        `{"kind": ..., "classes": {class: number of files}}`.

    Raises:
        EdgetuneError: one line naming the source and what is wrong.
    """
    from edgetune.components.ingest import tables

    rules = rules or LabelRules()
    fs, root = open_fs(source)
    if fs.isdir(root):
        kind, counts = "folder", _folder_counts(fs, root.rstrip("/"), source, rules)
    elif root.lower().endswith(TABLE_EXTENSIONS):
        kind, labels = tables.table_labels(fs, root, source)
        counts = Counter(c for c in map(rules.apply, labels) if c is not None)
    else:
        raise EdgetuneError(f"source {source}: not a folder, a .parquet file or a .csv manifest")
    _check_counts(source, counts, min_per_class)
    return {"kind": kind, "classes": dict(sorted(counts.items()))}


def _folder_counts(
    fs: fsspec.AbstractFileSystem, root: str, source: str, rules: LabelRules
) -> Counter:
    counts: Counter = Counter()
    first = None
    for class_dir in class_folders(fs, root, source, Counter()):
        found = image_files(fs, root, class_dir, Counter())
        label = rules.apply(printable(posixpath.basename(class_dir)))
        if found and label is not None:
            counts[label] += len(found)
            first = first or found[0]
    if first is not None:
        try:
            with fs.open(first, "rb") as f:
                f.read(16)
        except OSError as e:
            raise EdgetuneError(f"source {source}: cannot read {printable(first)} ({e})") from None
    return counts


def _check_counts(source: str, counts: Counter, min_per_class: int) -> None:
    if len(counts) < 2:
        names = ", ".join(counts) or "none"
        raise EdgetuneError(
            f"source {source}: {len(counts)} class with images ({names}); "
            "a classifier needs at least 2"
        )
    short = [f"{c!r} has {n}" for c, n in sorted(counts.items()) if n < min_per_class]
    if short:
        raise EdgetuneError(
            f"source {source}: class {', '.join(short)} image files; min_per_class={min_per_class}"
        )
