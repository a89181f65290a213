"""Ingest's dataset on disk: Parquet shards of encoded images, listed by an index written last.

A shard holds whole row groups of `ROW_GROUP_ROWS` images. A new shard starts before the row
group that would take the current one past `SHARD_BYTES` (row data as Arrow holds it: the
encoded image bytes and a few short strings), so a shard is at most 64 MiB unless one row
group alone is larger (256 images of over 256 KiB each). Writing and reading hold one row
group at a time: memory does not grow with the data set.

Readers find the shards through `dataset_index.json` only. It is written after every shard is
in place, and an earlier index is removed before any earlier shard, so a folder with a missing
or half-written shard set is never read as complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from edgetune import files
from edgetune.errors import EdgetuneError

ROW_GROUP_ROWS = 256  # images per row group: what a streaming reader holds at once
SHARD_BYTES = 64 * 2**20
INDEX_FORMAT = 1


class ShardWriter:
    """Writes tables into consecutive shards of at most `SHARD_BYTES` in `directory`."""

    def __init__(self, directory: Path, schema: pa.Schema, shard_bytes: int | None = None) -> None:
        """Shards go to `directory` (created), named `files.DATASET_SHARD`."""
        self.directory = directory
        self.schema = schema
        self.shard_bytes = shard_bytes or SHARD_BYTES
        self.shards: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        """Appends `table` (at most one row group's rows) to the current or a new shard."""
        if not table.num_rows:
            return
        current = self.shards[-1] if self._writer else None
        if current and current["bytes"] + table.nbytes > self.shard_bytes:
            self._close()
            current = None
        if current is None:
            name = files.DATASET_SHARD.format(index=len(self.shards))
            self._writer = pq.ParquetWriter(self.directory / name, self.schema)
            current = {"file": name, "rows": 0, "bytes": 0}
            self.shards.append(current)
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        current["rows"] += table.num_rows
        current["bytes"] += table.nbytes

    def close(self) -> list[dict[str, Any]]:
        """Closes the last shard; returns every shard's file name, rows and row bytes."""
        self._close()
        return self.shards

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def publish(staged: Path, out: Path, shards: list[dict[str, Any]], **info: Any) -> Path:
    """Moves `staged` shards into `out`, replacing an earlier set; writes the index last."""
    unpublish(out)
    for shard in shards:
        os.replace(staged / shard["file"], out / shard["file"])
    index = {
        "format": INDEX_FORMAT,
        "rows": sum(s["rows"] for s in shards),
        "row_group_rows": ROW_GROUP_ROWS,
        "shard_bytes": SHARD_BYTES,
        **info,
        "shards": shards,
    }
    return files.write_json(out / files.DATASET_INDEX, index)


def unpublish(out: Path) -> None:
    """Removes a dataset from `out`: the index first, so its shards are never read again."""
    (out / files.DATASET_INDEX).unlink(missing_ok=True)
    for old in out.glob(files.DATASET_SHARD.replace("{index:05d}", "*")):
        old.unlink()


def read_index(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """The dataset's index, after checking every shard it lists is there."""
    directory = Path(dataset_dir)
    path = directory / files.DATASET_INDEX
    if not path.is_file():
        raise EdgetuneError(
            f"{path}: not found; the dataset ingest writes is complete only once its index "
            "is written (run ingest again)"
        )
    index = files.read_json(path)
    for shard in index["shards"]:
        if not (directory / shard["file"]).is_file():
            raise EdgetuneError(f"{directory / shard['file']}: listed in {path} but missing")
    return index


def shard_paths(dataset_dir: str | os.PathLike) -> list[Path]:
    """The dataset's shards, in order (the listing order of the images)."""
    return [Path(dataset_dir) / s["file"] for s in read_index(dataset_dir)["shards"]]


def num_rows(dataset_dir: str | os.PathLike) -> int:
    """Images in the dataset, from the index."""
    return int(read_index(dataset_dir)["rows"])


def read_columns(dataset_dir: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """`columns` (None: all) of every row, across the shards; leave out `image` for big data."""
    tables = [pq.read_table(path, columns=columns) for path in shard_paths(dataset_dir)]
    if not tables:
        raise EdgetuneError(f"{dataset_dir}: the dataset has no images")
    return pa.concat_tables(tables)


def iter_batches(
    dataset_dir: str | os.PathLike, columns: list[str], batch_size: int = ROW_GROUP_ROWS
) -> Iterator[pa.RecordBatch]:
    """`columns` a batch at a time, shard after shard, in the dataset's order."""
    for path in shard_paths(dataset_dir):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
