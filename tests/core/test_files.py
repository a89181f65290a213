"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from edgetune import files


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_atomic_path_leaves_the_old_file_intact_when_the_body_raises(tmp_path):
    target = tmp_path / "model.h5"
    target.write_bytes(b"old model")

    with pytest.raises(RuntimeError, match="disk full"), files.atomic_path(target) as tmp:
        tmp.write_bytes(b"half a new mod")
        raise RuntimeError("disk full")

    assert target.read_bytes() == b"old model"
    assert leftovers(tmp_path) == []  # the temporary file is gone too


def test_atomic_path_replaces_the_file_only_once_the_body_is_done(tmp_path):
    target = tmp_path / "sub" / "report.json"  # the parent folder is created

    with files.atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()  # nothing at the real name while writing
        assert tmp.parent == target.parent  # same folder: the rename is atomic

    assert target.read_text() == "new" and leftovers(target.parent) == []


def test_atomic_dir_keeps_the_old_folder_on_error_and_swaps_it_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")

    with pytest.raises(ValueError), files.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("partial")
        raise ValueError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]

    with files.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert leftovers(tmp_path) == []


def test_write_json_handles_numpy_values_and_paths_and_refuses_the_unknown(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_json(
        target, {"acc": np.float32(0.5), "cm": np.eye(2, dtype=np.int64), "p": tmp_path}
    )

    assert files.read_json(target) == {"acc": 0.5, "cm": [[1, 0], [0, 1]], "p": str(tmp_path)}
    with pytest.raises(TypeError, match="object"):
        files.write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_gzip_size_is_the_compressed_length_and_rewards_zeros():
    data = bytes(10_000)
    assert files.gzip_size(data) == len(gzip.compress(data, compresslevel=9, mtime=0))
    noise = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert files.gzip_size(data) < 100 < files.gzip_size(noise)


def test_split_file_and_artifact_dir_name_and_create_the_paths(tmp_path):
    assert files.split_file(tmp_path, "val") == tmp_path / "val.npz"
    folder = files.artifact_dir(tmp_path / "a" / "b")
    assert folder == tmp_path / "a" / "b" and folder.is_dir()
    assert files.artifact_dir(folder) == folder  # a second use is harmless


def test_sha256_file_matches_hashlib_over_the_bytes(tmp_path):
    import hashlib

    path = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(3 << 20)  # several read chunks
    path.write_bytes(data)

    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
