"""The agent's state on disk: installed versions, which one is served, and what was ever seen.

Layout under the state folder::

    versions/<version>/   model.tflite, samples.npz, manifest.json, manifest.sig (as signed)
    spool/                uploads being received (removed at start)
    state.json            {"current", "previous", "sequence", "history": {version: content sha256}}

`state.json` is replaced atomically rather than kept as a `current` symlink: it holds the
pointer, the highest sequence ever accepted (the anti-rollback mark) and the model hash of
every version ever installed (so a name is never reused for other content, even after its
folder was pruned), and one rename changes them together. It behaves the same on file
systems without symlinks (FAT on SD cards). Installed folders keep the signed files
untouched, so a restart verifies them again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgetune import files
from edgetune.bundle import VerifiedBundle
from edgetune.errors import EdgetuneError

STATE_FILE = "state.json"
VERSIONS_DIR = "versions"
SPOOL_DIR = "spool"

log = logging.getLogger(__name__)


class VersionConflict(EdgetuneError):
    """Refused because of what is installed: a reused name, an old sequence, a stale If-Match."""


class NoPreviousVersion(EdgetuneError):
    """A rollback names a version that is not installed here."""


@dataclass(frozen=True)
class State:
    """Which version is served, which was before, the anti-rollback mark and the history.

    Attributes:
        current: the served version.
        previous: the version served before it (kept on disk for a rollback).
        sequence: the highest bundle or rollback-order sequence ever accepted.
        history: the content sha256 (`VerifiedBundle.content_sha256`) of every version
            ever installed, kept after its folder is pruned.
    """

    current: str | None = None
    previous: str | None = None
    sequence: int = 0
    history: dict[str, str] = field(default_factory=dict)


class VersionStore:
    """Installs verified bundles into a state folder and moves the served-version pointer.

    Not thread-safe: the agent serializes installs and rollbacks with one lock.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir)
        self.versions = self.root / VERSIONS_DIR
        self.spool = self.root / SPOOL_DIR
        self.versions.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)

    def version_dir(self, version: str) -> Path:
        """The folder that holds installed `version`."""
        return self.versions / version

    def state(self) -> State | None:
        """The state on disk; an empty one if there is none, None if it cannot be read."""
        path = self.root / STATE_FILE
        if not path.exists():
            return State()
        try:
            doc = files.read_json(path)
            return State(
                current=doc.get("current"),
                previous=doc.get("previous"),
                sequence=int(doc.get("sequence", 0)),
                history=dict(doc.get("history", {})),
            )
        except (OSError, ValueError, AttributeError, TypeError) as e:
            log.error("%s is unreadable (%s); starting without a served version", STATE_FILE, e)
            return None

    def clean(self, state: State | None) -> list[str]:
        """Removes what a crash can leave; returns the names removed.

        That is spooled uploads, half-written temp folders, and version folders the state
        does not point at.

        With an unreadable state only temporary files go: the versions may still be wanted.
        """
        removed = []
        for entry in [*self.spool.iterdir(), *self.versions.iterdir()]:
            temporary = entry.parent == self.spool or entry.name.startswith(".")
            orphan = state is not None and entry.name not in (state.current, state.previous)
            if temporary or orphan:
                _remove(entry)
                removed.append(entry.name)
        return removed

    def install(self, bundle: VerifiedBundle) -> Path:
        """Writes a verified bundle into `versions/<version>/` durably and atomically.

        The files and the folder are fsynced before the rename that publishes the version,
        so a power cut leaves either no folder or a complete one. An existing folder for
        the same version is left as it is (the caller checked the history).
        """
        target = self.version_dir(bundle.version)
        if target.is_dir():
            return target
        with files.atomic_dir(target) as tmp:
            bundle.write_to(tmp)
        files.fsync_dir(self.versions)
        return target

    def save(self, state: State) -> State:
        """Writes `state` atomically and prunes versions it no longer points at."""
        files.write_json(self.root / STATE_FILE, asdict(state), sync=True)
        files.fsync_dir(self.root)
        keep = {state.current, state.previous}
        for entry in self.versions.iterdir():
            # Devices have little flash: keep only what a rollback can reach.
            if entry.name not in keep and not entry.name.startswith("."):
                _remove(entry)
        return state

    def activate(self, old: State, bundle: VerifiedBundle) -> State:
        """The state serving `bundle` from now on; what was served becomes `previous`."""
        history = {**old.history, bundle.version: bundle.content_sha256}
        previous = old.previous if old.current == bundle.version else old.current
        return self.save(
            State(bundle.version, previous, max(old.sequence, bundle.manifest.sequence), history)
        )

    def return_to(self, old: State, version: str, sequence: int) -> State:
        """The state serving the installed `version` again, after a signed rollback order."""
        previous = old.previous if old.current == version else old.current
        return self.save(replace(old, current=version, previous=previous, sequence=sequence))


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
