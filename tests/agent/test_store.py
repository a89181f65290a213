"""The version store: what reaches the disk, and in which order, when a version is published."""

from __future__ import annotations

import os
from pathlib import Path

from edgetune.agent.store import VersionStore
from edgetune.bundle import open_bundle


def test_files_and_folder_are_fsynced_before_the_rename_that_publishes_a_version(
    tmp_path, keys, make_bundle, monkeypatch
):
    store = VersionStore(tmp_path / "state")
    verified = open_bundle(make_bundle("1.0.0"), keys.public)
    events: list[tuple[str, Path, Path | None]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")), None))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("rename", Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    target = store.install(verified)

    renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == target]
    assert len(renames) == 1, events
    publish = renames[0]
    temp_dir = events[publish][1]
    synced_before = [path for kind, path, _ in events[:publish] if kind == "fsync"]
    names = {"model.tflite", "samples.npz", "manifest.json", "manifest.sig"}
    assert {p.name for p in synced_before if p.parent == temp_dir} == names
    # The folder itself last, after every file in it: its entries are durable too.
    assert synced_before[-1] == temp_dir
    # Then the parent, so the rename survives a power cut as well.
    assert ("fsync", store.versions, None) in events[publish + 1 :]
    assert {p.name for p in target.iterdir()} == names
