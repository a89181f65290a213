"""Labelled samples a device keeps to personalize its head: bounded, local, never served back.

Each sample is one file ``samples/<sequence>-<role>.npz`` holding its uint8 pixels (as the
served bundle's preprocessing made them) and its label name, written atomically. Every
`holdout_every`-th sample of a class (by arrival) is held out: the device's own gate judges
heads on those and training never sees them, so the held-out set stays the same as more
samples arrive. Past the count or byte limit, the oldest samples are deleted first. No
method returns a sample to a caller outside the agent: the HTTP layer sees counts only.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune import files
from edgetune.errors import EdgetuneError

SAMPLES_DIR = "samples"
HOLDOUT, TRAIN = "h", "t"

log = logging.getLogger(__name__)


class SampleTooLarge(EdgetuneError):
    """One sample is larger than the whole store may hold."""


@dataclass(frozen=True)
class StoredSample:
    """Where a sample is and what it is (no pixels)."""

    sequence: int
    label: str
    holdout: bool
    bytes: int
    path: Path


@dataclass(frozen=True)
class SampleSet:
    """Samples read for training: pixels [N, H, W, C], label indices, held-out mask (oldest first)."""

    pixels: np.ndarray
    labels: np.ndarray
    holdout: np.ndarray
    skipped: int = 0


class SampleStore:
    """The device's labelled samples, limited by count and bytes, oldest dropped first."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        max_samples: int = 2000,
        max_bytes: int = 64 * 1024 * 1024,
        holdout_every: int = 4,
    ) -> None:
        self.root = Path(state_dir) / SAMPLES_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_samples, self.max_bytes, self.holdout_every = max_samples, max_bytes, holdout_every
        self._lock = threading.Lock()
        self._index = self._scan()
        self._per_label = Counter(s.label for s in self._index)

    def _scan(self) -> list[StoredSample]:
        index = []
        for path in self.root.iterdir():
            stem, _, role = path.stem.partition("-")
            if path.suffix != ".npz" or not stem.isdigit() or role not in (HOLDOUT, TRAIN):
                if path.name.startswith("."):  # a write a crash interrupted
                    path.unlink(missing_ok=True)
                continue
            try:
                with np.load(path, allow_pickle=False) as npz:
                    label = str(npz["label"])
            except (OSError, ValueError, KeyError, EOFError):
                log.warning("dropping unreadable sample %s", path.name)
                path.unlink(missing_ok=True)
                continue
            index.append(StoredSample(int(stem), label, role == HOLDOUT, path.stat().st_size, path))
        return sorted(index, key=lambda s: s.sequence)

    def add(self, pixels: np.ndarray, label: str) -> int:
        """Stores one sample; returns how many old samples were dropped to make room.

        Raises:
            SampleTooLarge: the sample alone is larger than `max_bytes`.
        """
        buffer = io.BytesIO()
        np.savez(buffer, pixels=np.asarray(pixels, np.uint8), label=np.array(label))
        data = buffer.getvalue()
        if len(data) > self.max_bytes:
            raise SampleTooLarge(
                f"sample of {len(data)} bytes; the store holds at most {self.max_bytes}"
            )
        with self._lock:
            sequence = self._index[-1].sequence + 1 if self._index else 1
            holdout = self._per_label[label] % self.holdout_every == self.holdout_every - 1
            path = self.root / f"{sequence:012d}-{HOLDOUT if holdout else TRAIN}.npz"
            files.write_bytes(path, data)
            self._index.append(StoredSample(sequence, label, holdout, len(data), path))
            self._per_label[label] += 1
            return self._evict()

    def _evict(self) -> int:
        dropped = 0
        while self._index and (
            len(self._index) > self.max_samples or self.total_bytes() > self.max_bytes
        ):
            oldest = self._index.pop(0)
            oldest.path.unlink(missing_ok=True)
            dropped += 1
        return dropped

    def total_bytes(self) -> int:
        """Bytes the stored samples take on disk."""
        return sum(s.bytes for s in self._index)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per label: samples kept for training and held out (counts only)."""
        out: dict[str, dict[str, int]] = {}
        for s in list(self._index):
            entry = out.setdefault(s.label, {"train": 0, "holdout": 0})
            entry["holdout" if s.holdout else "train"] += 1
        return out

    def __len__(self) -> int:
        return len(self._index)

    def load(self, labels: tuple[str, ...], shape: tuple[int, int, int]) -> SampleSet:
        """Every sample whose label is in `labels` and whose pixels have `shape`, oldest first.

        Samples of other labels or shapes (kept from an earlier bundle) are counted as skipped.
        """
        position = {label: i for i, label in enumerate(labels)}
        pixels, ys, holdout, skipped = [], [], [], 0
        for s in list(self._index):
            try:
                with np.load(s.path, allow_pickle=False) as npz:
                    p = npz["pixels"]
            except (OSError, ValueError, KeyError, EOFError):
                skipped += 1
                continue
            if s.label not in position or p.shape != shape:
                skipped += 1
                continue
            pixels.append(p)
            ys.append(position[s.label])
            holdout.append(s.holdout)
        stacked = np.stack(pixels) if pixels else np.zeros((0, *shape), np.uint8)
        return SampleSet(stacked, np.array(ys, np.int64), np.array(holdout, bool), skipped)
