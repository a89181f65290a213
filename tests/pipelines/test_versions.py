"""data_version and code_version: what makes a cached step miss when its data or code changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fsspec
import pytest

from edgetune import __version__
from edgetune.pipelines import versions


def test_data_version_changes_with_the_listing_only(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    image = tmp_path / "cat" / "a.png"
    image.write_bytes(b"one")
    first = versions.data_version(str(tmp_path))
    assert first.startswith("listing:") and versions.data_version(str(tmp_path)) == first
    (tmp_path / "cat" / "b.png").write_bytes(b"two")
    second = versions.data_version(str(tmp_path))
    assert second != first
    image.write_bytes(b"ONE, rewritten")
    os.utime(image, ns=(1, 1))
    assert versions.data_version(str(tmp_path)) not in (first, second)
    table = tmp_path / "cat" / "a.png"
    assert versions.data_version(str(table)).startswith("listing:")  # a single file


def test_remote_listing_and_unlistable_sources() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/versions-test/data/x.png", b"x")
    first = versions.data_version("memory://versions-test/data")
    fs.pipe("/versions-test/data/y.png", b"y")
    assert (
        first.startswith("listing:")
        and versions.data_version("memory://versions-test/data") != first
    )
    assert versions.data_version("s3://no-credentials-here/data") == ""  # s3fs not installed


def test_fill_keeps_given_values_and_marks_unlistable_data(capsys: pytest.CaptureFixture) -> None:
    given = versions.fill(
        {"data_uri": "s3://b/d", "code_version": "v", "data_version": "d"}, when="t"
    )
    assert (given["code_version"], given["data_version"]) == ("v", "d")
    filled = versions.fill({"data_uri": "s3://bucket/data"}, when="20261130T120000")
    assert filled["data_version"] == "unlisted:20261130T120000"
    assert filled["code_version"].startswith(__version__)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_code_version_names_the_commit_and_uncommitted_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _git(tmp_path, "init", "-q")
    core = tmp_path / "components" / "core.py"
    core.parent.mkdir()
    core.write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(versions, "ROOT", tmp_path)
    clean = versions.code_version()
    assert clean.startswith(f"{__version__}+") and "dirty" not in clean
    core.write_text("x = 2\n")
    edited = versions.code_version()
    assert edited.startswith(clean + ".dirty")
    core.write_text("x = 3\n")
    assert versions.code_version() not in (clean, edited)
    core.write_text("x = 1\n")
    (tmp_path / "README.md").write_text("docs are not code\n")
    assert versions.code_version() == clean
    (tmp_path / "components" / "new_step.py").write_text("y = 1\n")  # untracked source counts
    assert versions.code_version().startswith(clean + ".dirty")


def test_code_version_outside_git_is_the_packaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "ROOT", tmp_path)
    monkeypatch.setenv("EDGETUNE_GIT_SHA", "abcdef0123456789")
    assert versions.code_version() == f"{__version__}+abcdef012345"
