"""Where ingest's images come from: a folder with one sub-folder per class, or a Parquet table.

Local paths and fsspec URIs alike; nothing here decodes an image.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from edgetune.errors import EdgetuneError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class Item:
    """One image to examine: its bytes, or the error met while reading them."""

    path: str  # relative to the source
    label: str | None
    data: bytes = b""
    error: str | None = None


@dataclass(frozen=True)
class Listing:
    entries: list[Any]
    load: Callable[[Any], Item]  # reads one entry; runs on worker threads
    classes: tuple[str, ...]  # includes class folders that turn out to hold no usable image
    ignored: int


def open_source(source: str) -> Listing:
    """Lists a source's images (read lazily, on worker threads) and its class names."""
    try:
        fs, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as e:
        raise EdgetuneError(f"source {source}: {e}") from None
    if not fs.exists(root):
        raise EdgetuneError(f"source {source}: not found")
    if fs.isdir(root):
        return _list_folder(fs, root.rstrip("/"), source)
    if root.lower().endswith(".parquet"):
        return _read_parquet(fs, root, source)
    raise EdgetuneError(f"source {source}: not a folder or a .parquet file")


def _list_folder(fs: fsspec.AbstractFileSystem, root: str, source: str) -> Listing:
    entries = [e for e in fs.ls(root, detail=True) if not _hidden(e["name"])]
    class_dirs = sorted(e["name"].rstrip("/") for e in entries if e["type"] == "directory")
    if not class_dirs:
        raise EdgetuneError(
            f"source {source}: no class sub-folders; expected one folder per class, "
            f"e.g. {source.rstrip('/')}/cat/001.png"
        )
    ignored = len(entries) - len(class_dirs)  # loose files beside the class folders
    found: list[tuple[str, str]] = []
    for class_dir in class_dirs:
        for path in sorted(fs.find(class_dir)):
            rel = posixpath.relpath(path, root)
            if _hidden(rel):
                continue
            if rel.lower().endswith(IMAGE_EXTENSIONS):
                found.append((path, rel))
            else:
                ignored += 1
    if not found:
        raise EdgetuneError(
            f"source {source}: the class folders hold no images ({', '.join(IMAGE_EXTENSIONS)})"
        )

    def read(entry: tuple[str, str]) -> Item:
        path, rel = entry
        label = rel.split("/", 1)[0]
        try:
            return Item(rel, label, fs.cat_file(path))
        except OSError as e:
            return Item(rel, label, error=f"cannot read ({e})")

    classes = tuple(posixpath.basename(d) for d in class_dirs)
    return Listing(found, read, classes, ignored)


def _read_parquet(fs: fsspec.AbstractFileSystem, root: str, source: str) -> Listing:
    try:
        with fs.open(root, "rb") as f:
            table = pq.read_table(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise EdgetuneError(f"source {source}: not a readable Parquet file ({e})") from None
    for column, accepted in (("image", "binary (encoded image bytes)"), ("label", "string or int")):
        if column not in table.column_names:
            raise EdgetuneError(
                f"source {source}: Parquet table has no column {column!r} ({accepted}); "
                f"columns: {table.column_names}"
            )
    image_type, label_type = table.schema.field("image").type, table.schema.field("label").type
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise EdgetuneError(f"source {source}: column 'image' is {image_type}; accepted: binary")
    if not (pa.types.is_string(label_type) or pa.types.is_integer(label_type)):
        raise EdgetuneError(
            f"source {source}: column 'label' is {label_type}; accepted: string or int"
        )
    if table.num_rows == 0:
        raise EdgetuneError(f"source {source}: the Parquet table has no rows")
    name_column = next((c for c in ("path", "name") if c in table.column_names), None)
    names = table.column(name_column).to_pylist() if name_column else [None] * table.num_rows
    items = [
        Item(str(name) if name is not None else f"row {i}", _label(label), data or b"")
        for i, (name, label, data) in enumerate(
            zip(
                names,
                table.column("label").to_pylist(),
                table.column("image").to_pylist(),
                strict=True,
            )
        )
    ]
    classes = tuple(sorted({item.label for item in items if item.label is not None}))
    return Listing(items, lambda item: item, classes, ignored=0)


def _label(value: object) -> str | None:
    return None if value is None or str(value) == "" else str(value)


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/") if part)
