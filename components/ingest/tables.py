"""Table sources: a Parquet table of encoded images, or a CSV/Parquet manifest of files.

A Parquet file with an `image` column (encoded bytes) and a `label` column is an image table,
read row group by row group. A CSV file, or a Parquet file with `path` and `label` but no
`image`, is a manifest: each row names an image file, relative to the manifest's folder, or
absolute, or any fsspec URI (`s3://bucket/cat/1.png`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from edgetune.components.ingest.sources import CHUNK, Item, LabelRules, Listing, chunked
from edgetune.errors import EdgetuneError

_MANIFEST_COLUMNS = ("path", "label")


def open_table(fs: fsspec.AbstractFileSystem, root: str, source: str, rules: LabelRules) -> Listing:
    """Lists an image table or a manifest, after checking its columns and types."""
    if root.lower().endswith(".csv"):
        return _manifest(fs, root, source, rules, read_csv(fs, root, source))
    schema, num_rows = parquet_schema(fs, root, source)
    if "image" not in schema.names and all(c in schema.names for c in _MANIFEST_COLUMNS):
        with fs.open(root, "rb") as f:
            table = pq.read_table(f, columns=list(_MANIFEST_COLUMNS))
        return _manifest(fs, root, source, rules, table)
    check_image_table(schema, num_rows, source)
    return _image_table(fs, root, schema, rules)


def parquet_schema(fs: fsspec.AbstractFileSystem, root: str, source: str) -> tuple[Any, int]:
    """The schema and row count from the Parquet footer alone (no data read)."""
    try:
        with fs.open(root, "rb") as f:
            meta = pq.ParquetFile(f).metadata
            return meta.schema.to_arrow_schema(), meta.num_rows
    except (pa.ArrowInvalid, OSError) as e:
        raise EdgetuneError(f"source {source}: not a readable Parquet file ({e})") from None


def check_image_table(schema: Any, num_rows: int, source: str) -> None:
    """Refuses an image table without `image` bytes and `label`, or without rows."""
    for column, accepted in (("image", "binary (encoded image bytes)"), ("label", "string or int")):
        if column not in schema.names:
            raise EdgetuneError(
                f"source {source}: Parquet table has no column {column!r} ({accepted}); "
                f"columns: {schema.names}; or give a manifest with columns path, label"
            )
    image_type, label_type = schema.field("image").type, schema.field("label").type
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise EdgetuneError(f"source {source}: column 'image' is {image_type}; accepted: binary")
    if not (pa.types.is_string(label_type) or pa.types.is_integer(label_type)):
        raise EdgetuneError(
            f"source {source}: column 'label' is {label_type}; accepted: string or int"
        )
    if num_rows == 0:
        raise EdgetuneError(f"source {source}: the Parquet table has no rows")


def _image_table(
    fs: fsspec.AbstractFileSystem, root: str, schema: Any, rules: LabelRules
) -> Listing:
    name_column = next((c for c in ("path", "name") if c in schema.names), None)
    columns = ["image", "label", *([name_column] if name_column else [])]
    with fs.open(root, "rb") as f:
        raw_labels = pq.read_table(f, columns=["label"]).column("label").to_pylist()
    classes = tuple(sorted({c for c in map(rules.apply, raw_labels) if c is not None}))

    def chunks() -> Iterator[list[Item]]:
        row = 0
        with fs.open(root, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=CHUNK, columns=columns):
                names = batch.column(name_column).to_pylist() if name_column else None
                labels, images = batch.column("label").to_pylist(), batch.column("image")
                items = []
                for i, label in enumerate(labels):
                    name = names[i] if names and names[i] is not None else f"row {row + i}"
                    items.append(Item(str(name), rules.apply(label), images[i].as_py() or b""))
                row += len(labels)
                yield items

    return Listing("parquet", len(raw_labels), chunks, lambda item: item, classes, {})


def read_csv(fs: fsspec.AbstractFileSystem, root: str, source: str) -> Any:
    """A manifest CSV as a table of strings, with its columns checked."""
    options = pacsv.ConvertOptions(column_types={c: pa.string() for c in _MANIFEST_COLUMNS})
    try:
        with fs.open(root, "rb") as f:
            table = pacsv.read_csv(f, convert_options=options)
    except (pa.ArrowInvalid, OSError) as e:
        raise EdgetuneError(f"source {source}: not a readable CSV manifest ({e})") from None
    return table


def check_manifest(column_names: list[str], num_rows: int, source: str) -> None:
    """Refuses a manifest without `path` and `label` columns, or without rows."""
    missing = [c for c in _MANIFEST_COLUMNS if c not in column_names]
    if missing:
        raise EdgetuneError(
            f"source {source}: manifest has no column {missing[0]!r}; "
            f"columns: {column_names}; accepted: path,label (one row per image file)"
        )
    if num_rows == 0:
        raise EdgetuneError(f"source {source}: the manifest has no rows")


def _manifest(
    fs: fsspec.AbstractFileSystem, root: str, source: str, rules: LabelRules, table: Any
) -> Listing:
    check_manifest(table.column_names, table.num_rows, source)
    base = posixpath.dirname(root)
    rows = list(
        zip(table.column("path").to_pylist(), table.column("label").to_pylist(), strict=True)
    )
    classes = tuple(sorted({c for c in (rules.apply(label) for _, label in rows) if c}))

    def read(row: tuple[str | None, str | None]) -> Item:
        path, label = row
        if not path or not path.strip():
            return Item("(empty path)", rules.apply(label), error="manifest row has no path")
        try:
            return Item(path, rules.apply(label), read_file(fs, base, path.strip()))
        except FileNotFoundError:
            return Item(path, rules.apply(label), error="not found")
        except (OSError, ValueError, ImportError) as e:
            return Item(path, rules.apply(label), error=f"cannot read ({e})")

    return Listing("manifest", len(rows), lambda: chunked(rows), read, classes, {})


def read_file(fs: fsspec.AbstractFileSystem, base: str, path: str) -> bytes:
    """A manifest entry's bytes: a URI on its own filesystem, else beside the manifest."""
    if "://" in path:
        other, resolved = fsspec.core.url_to_fs(path)
        return other.cat_file(resolved)
    resolved = path if path.startswith("/") else posixpath.join(base, path)
    return fs.cat_file(resolved)


def table_labels(fs: fsspec.AbstractFileSystem, root: str, source: str) -> tuple[str, list]:
    """The kind of a table source and its raw labels, after checking its columns."""
    if root.lower().endswith(".csv"):
        table = read_csv(fs, root, source)
        check_manifest(table.column_names, table.num_rows, source)
        return "manifest", table.column("label").to_pylist()
    schema, num_rows = parquet_schema(fs, root, source)
    if "image" not in schema.names and all(c in schema.names for c in _MANIFEST_COLUMNS):
        check_manifest(schema.names, num_rows, source)
        kind = "manifest"
    else:
        check_image_table(schema, num_rows, source)
        kind = "parquet"
    with fs.open(root, "rb") as f:
        return kind, pq.read_table(f, columns=["label"]).column("label").to_pylist()
