"""What identifies a run's code and data, for the cache keys of the cached steps.

KFP (and kfp.local) caches a step on its inputs. A path or URI says where the data is, not
what it is, and the code a step runs is not an input at all; so the run passes `data_version`
(ingest) and `code_version` (every cached step), filled in here when the user gave none.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from edgetune import __version__
from edgetune import code_version as packaged_code_version

ROOT = Path(__file__).resolve().parents[1]
# What the steps run: an edit elsewhere (README, tests, benchmarks) is not a new code version.
CODE_PATHS = (
    "edgetune",
    "components",
    "pipelines",
    "zoo",
    "configs",
    "pyproject.toml",
    "requirements.lock",
)


def _git(*args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done if done.returncode == 0 else None


def code_version() -> str:
    """`<version>+<commit>`, plus `.<hash of the uncommitted changes>` in an edited checkout.

    An edit that is not committed yet still changes the version, so a cached step never
    serves a result of other code. Outside a git checkout (an image): the packaged version
    with $EDGETUNE_GIT_SHA.
    """
    head = _git("rev-parse", "HEAD")
    if head is None:
        return packaged_code_version()
    version = f"{__version__}+{head.stdout.decode().strip()[:12]}"
    diff = _git("diff", "HEAD", "--binary", "--", *CODE_PATHS)
    untracked = _git("ls-files", "--others", "--exclude-standard", "-z", "--", *CODE_PATHS)
    if diff is None or untracked is None:
        return version
    digest = hashlib.sha256(diff.stdout)
    for name in sorted(n for n in untracked.stdout.decode().split("\0") if n):
        path = ROOT / name
        if path.suffix in (".py", ".yaml", ".json", ".h5") and path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    if not diff.stdout and digest.hexdigest() == hashlib.sha256(b"").hexdigest():
        return version
    return f"{version}.dirty{digest.hexdigest()[:12]}"


def data_version(uri: str) -> str:
    """A fingerprint of the source's file listing (names, sizes, modification times or ETags).

    Cheap (no file is read) and it changes when a file is added, removed or rewritten.
    Returns "" when the listing cannot be read from here (e.g. no credentials for a bucket).
    """
    from edgetune.pipelines.params import local_data_path

    path = local_data_path(uri)
    entries = _local_listing(path) if path is not None else _remote_listing(uri)
    if entries is None:
        return ""
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode() + b"\n")
    return f"listing:{digest.hexdigest()[:16]}"


def _local_listing(path: Path) -> list[str] | None:
    if path.is_file():
        st = path.stat()
        return [f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}"]
    if not path.is_dir():
        return None
    out = []
    for folder, _, names in os.walk(path):
        for name in names:
            file = Path(folder) / name
            st = file.stat()
            out.append(f"{file.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}")
    return out


def _remote_listing(uri: str) -> list[str] | None:
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(uri)
        found = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    except Exception:  # no credentials, no network, no such bucket: the caller decides
        return None
    out = []
    for name, info in found.items():
        stamp = next(
            (
                str(info[k])
                for k in ("ETag", "etag", "md5Hash", "mtime", "LastModified")
                if k in info
            ),
            "",
        )
        out.append(f"{name}\0{info.get('size', '')}\0{stamp}")
    return out


UNLISTED = "unlisted:"


def fill(params: dict, *, when: str) -> dict:
    """Sets code_version and data_version where the user gave none; returns `params`.

    When the data cannot be listed from here, data_version is UNLISTED + `when` (the run's
    time): ingest and what follows then run afresh rather than serve a stale result.
    """
    if not params.get("code_version"):
        params["code_version"] = code_version()
    if not params.get("data_version"):
        params["data_version"] = data_version(str(params.get("data_uri", "")))
    if not params["data_version"]:
        params["data_version"] = f"{UNLISTED}{when}"
    return params
