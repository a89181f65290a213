"""Ingest's shard set: bounded shards, read in order through the index, never half-read."""

from __future__ import annotations

import pytest

from edgetune import files
from edgetune.components.ingest import shards
from edgetune.components.ingest.core import IngestStopped, ingest
from edgetune.errors import EdgetuneError


@pytest.fixture
def tiny_shards(monkeypatch):
    # 4 images a row group, and every row group past the byte bound: a shard per row group.
    monkeypatch.setattr(shards, "ROW_GROUP_ROWS", 4)
    monkeypatch.setattr(shards, "SHARD_BYTES", 1)


def test_large_data_spreads_over_bounded_shards_read_back_in_order(
    image_folder, tmp_path, tiny_shards
):
    src = image_folder({"cat": 6, "dog": 7})
    ingest(str(src), tmp_path / "out", min_per_class=3)

    index = files.read_json(tmp_path / "out" / files.DATASET_INDEX)
    assert [s["rows"] for s in index["shards"]] == [4, 4, 4, 1] and index["rows"] == 13
    paths = shards.read_columns(tmp_path / "out", ["path"]).column("path").to_pylist()
    assert paths == sorted(paths) and len(paths) == 13  # listing order, across shards
    batches = list(shards.iter_batches(tmp_path / "out", ["path"], batch_size=3))
    assert [p for b in batches for p in b.column("path").to_pylist()] == paths
    assert not list((tmp_path / "out").glob(".ingest-*"))  # no staging left behind


def test_a_shard_set_without_its_index_or_missing_a_shard_is_refused(image_folder, tmp_path):
    out = tmp_path / "out"
    ingest(str(image_folder({"cat": 6, "dog": 7})), out, min_per_class=3)
    first = shards.shard_paths(out)[0]

    first.unlink()
    with pytest.raises(EdgetuneError, match=f"{first.name}: listed in .* but missing"):
        shards.read_columns(out)
    (out / files.DATASET_INDEX).unlink()
    with pytest.raises(EdgetuneError, match="dataset_index.json: not found"):
        shards.shard_paths(out)


def test_ingest_again_replaces_the_shards_and_a_stopped_run_leaves_no_dataset(
    image_folder, tmp_path, tiny_shards
):
    out = tmp_path / "out"
    ingest(str(image_folder({"cat": 6, "dog": 7})), out, min_per_class=3)
    ingest(str(image_folder({"cat": 3, "dog": 3}, name="small")), out, min_per_class=3)
    assert shards.num_rows(out) == 6
    assert sorted(p.name for p in out.glob("dataset-*")) == [
        p.name for p in shards.shard_paths(out)
    ]

    with pytest.raises(IngestStopped):
        ingest(str(image_folder({"cat": 1, "dog": 3}, name="few")), out)
    assert not (out / files.DATASET_INDEX).exists() and not list(out.glob("dataset-*"))
