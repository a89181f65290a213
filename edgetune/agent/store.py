"""The agent's state on disk: installed versions and which one is served.

Layout under the state folder::

    versions/<version>/   model.tflite, samples.npz, manifest.json, manifest.sig (as signed)
    state.json            {"current": "<version>", "previous": "<version>" | null}

The pointer is a small JSON file replaced atomically rather than a `current` symlink: it
holds `current` and `previous` together, so a push or a rollback changes both in one
rename, and it behaves the same on file systems without symlinks (FAT on SD cards).
Installed folders keep the signed files untouched, so a restart verifies them again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from edgetune import files
from edgetune.bundle import MANIFEST_FILE, VerifiedBundle
from edgetune.errors import EdgetuneError

POINTER_FILE = "state.json"
VERSIONS_DIR = "versions"

log = logging.getLogger(__name__)


class VersionConflict(EdgetuneError):
    """A different bundle with the same version is already installed."""


class NoPreviousVersion(EdgetuneError):
    """A rollback was asked for, but there is nothing to roll back to."""


@dataclass(frozen=True)
class Pointer:
    """Which installed versions are served now and were served before."""

    current: str | None = None
    previous: str | None = None


class VersionStore:
    """Installs verified bundles into a state folder and moves the served-version pointer.

    Not thread-safe: the agent serializes installs and rollbacks with one lock.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir)
        self.versions = self.root / VERSIONS_DIR
        self.versions.mkdir(parents=True, exist_ok=True)

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def pointer(self) -> Pointer:
        """The pointer on disk; an unreadable one counts as empty so a new push can repair it."""
        path = self.root / POINTER_FILE
        if not path.exists():
            return Pointer()
        try:
            doc = files.read_json(path)
            return Pointer(current=doc.get("current"), previous=doc.get("previous"))
        except (OSError, ValueError, AttributeError) as e:
            log.error("%s is unreadable (%s); starting without a served version", path, e)
            return Pointer()

    def install(self, bundle: VerifiedBundle) -> Path:
        """Writes a verified bundle into `versions/<version>/` atomically (temp folder, rename).

        Versions are immutable: pushing the same bundle again is a no-op, and a different
        bundle under an installed version's name is refused, so a name always means one model.

        Raises:
            VersionConflict: the version is installed with a different manifest.
        """
        target = self.version_dir(bundle.version)
        if target.exists():
            manifest = target / MANIFEST_FILE
            if manifest.is_file() and manifest.read_bytes() == bundle.manifest_bytes:
                return target
            raise VersionConflict(
                f"version {bundle.version} is already installed with different contents; "
                "give the new bundle a new version"
            )
        with files.atomic_dir(target) as tmp:
            bundle.write_to(tmp)
        return target

    def activate(self, version: str) -> Pointer:
        """Serves `version` from now on; what was served becomes `previous`; older ones go."""
        old = self.pointer()
        new = old if old.current == version else Pointer(current=version, previous=old.current)
        self._write(new)
        return new

    def rollback(self) -> Pointer:
        """Swaps `current` and `previous` (a second rollback undoes the first).

        Raises:
            NoPreviousVersion: no previous version is installed.
        """
        old = self.pointer()
        if not old.previous or not self.version_dir(old.previous).is_dir():
            raise NoPreviousVersion("no previous version to roll back to")
        new = Pointer(current=old.previous, previous=old.current)
        self._write(new)
        return new

    def _write(self, pointer: Pointer) -> None:
        files.write_json(self.root / POINTER_FILE, asdict(pointer))
        self._prune(pointer)

    def _prune(self, pointer: Pointer) -> None:
        # Devices have little flash: keep only what a rollback can reach, and remove the
        # temporary folders an interrupted install may have left behind.
        keep = {pointer.current, pointer.previous}
        for entry in self.versions.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
