"""Personalization on the device: a new head trained on its own samples, behind its own gate.

The served bundle's int8 extractor turns the stored samples into embeddings (LiteRT); a
head is trained on them with NumPy (`edgetune.head_training`) and installed only if its
accuracy on the device's held-out samples beats the head it would replace by at least
`min_gain_points`. The replaced head is kept for a rollback. Heads live under
``personal/head-<version>.npz`` (version 0 is the bundle's own head, never written here)
beside ``personal/state.json``; what leaves the device is metrics and, for federated
averaging, the head's weight change (`update`), never a sample.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetune import files
from edgetune.agent.runtime import LoadedModel
from edgetune.agent.samples import SampleStore
from edgetune.errors import EdgetuneError
from edgetune.head_training import HeadTrainConfig, accuracy, train_head
from edgetune.split import Head

PERSONAL_DIR = "personal"
STATE_FILE = "state.json"
TRAINED_FILE = "trained.npz"  # the last head trained, installed or not: federated averaging's
UPDATE_METRICS = ("before", "after", "gain_points", "installed", "n_holdout", "n_train")

log = logging.getLogger(__name__)


class NoSplitModel(EdgetuneError):
    """The served bundle has no split model, so nothing can be personalized."""


class TooFewSamples(EdgetuneError):
    """Not enough labelled samples to train and judge a head; the message says how many."""


class NoPersonalHead(EdgetuneError):
    """The device serves its bundle's head: there is no update or earlier head to return to."""


@dataclass(frozen=True)
class PersonalizeConfig:
    """The device's gate and how much data it needs.

    Attributes:
        min_gain_points: accuracy points a new head must gain on the held-out samples.
        min_per_class: samples a class needs to count towards `min_classes`.
        min_classes: classes that need `min_per_class` samples before training.
        val_fraction: share of each class's training samples kept for early stopping.
        train: the NumPy training settings (memory budget included).
    """

    min_gain_points: float = 1.0
    min_per_class: int = 4
    min_classes: int = 2
    val_fraction: float = 0.2
    train: HeadTrainConfig = field(default_factory=HeadTrainConfig)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()


class Personalizer:
    """The personal head of one device: which one serves, the previous one, the last result.

    Not thread-safe for changes: the server runs one personalize, rollback or install at a
    time. Predictions read `head_for` (a single attribute), never a half-written head.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        samples: SampleStore,
        config: PersonalizeConfig | None = None,
    ) -> None:
        self.root = Path(state_dir) / PERSONAL_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.samples, self.config = samples, config or PersonalizeConfig()
        self._state = self._read_state()
        self._head = self._load_head(self._state.get("version", 0))

    # ----------------------------------------------------------------------- state on disk

    def _read_state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        try:
            return dict(files.read_json(path)) if path.exists() else {}
        except (OSError, ValueError, TypeError) as e:
            log.error("%s unreadable (%s); serving the bundle's head", path, e)
            return {}

    def _load_head(self, version: int) -> Head | None:
        if not version:
            return None
        try:
            return Head.from_bytes((self.root / f"head-{version}.npz").read_bytes())
        except (OSError, EdgetuneError) as e:
            log.error("personal head %s unreadable (%s); serving the bundle's head", version, e)
            return None

    def _save(self, state: dict[str, Any], head: Head | None) -> None:
        files.write_json(self.root / STATE_FILE, state, sync=True)
        self._state, self._head = state, head
        keep = {f"head-{state.get('version', 0)}.npz", f"head-{state.get('previous')}.npz"}
        for path in self.root.glob("head-*.npz"):
            if path.name not in keep:  # devices have little flash: a rollback reaches one back
                path.unlink(missing_ok=True)

    # ----------------------------------------------------------------------------- reading

    def head_for(self, model: LoadedModel) -> Head | None:
        """The personal head to serve with `model`, or None to serve the bundle's model."""
        head = self._head
        split = model.split
        if head is None or split is None:
            return None
        if self._state.get("extractor_sha256") != split.extractor_sha256:
            return None
        return head if head.shape == split.base_head.shape else None

    @property
    def version(self) -> int:
        """The personal head's version (0: the bundle's own head)."""
        return int(self._state.get("version", 0)) if self._head is not None else 0

    def health(self, model: LoadedModel | None) -> dict[str, Any]:
        """Metrics only: sample counts per label, head versions, the last result."""
        serving = model is not None and self.head_for(model) is not None
        return {
            "available": model is not None and model.split is not None,
            "head_version": self.version if serving else 0,
            "previous_head_version": self._state.get("previous") if serving else None,
            "samples": self.samples.counts(),
            "samples_total": len(self.samples),
            "samples_bytes": self.samples.total_bytes(),
            "limits": {
                "max_samples": self.samples.max_samples,
                "max_bytes": self.samples.max_bytes,
                "min_per_class": self.config.min_per_class,
                "min_classes": self.config.min_classes,
                "min_gain_points": self.config.min_gain_points,
            },  # fmt: skip
            "last": self._state.get("last"),
        }

    # ---------------------------------------------------------------------------- changing

    def on_install(self, model: LoadedModel, personal_head: str) -> None:
        """A new bundle serves: keep the personal head (`keep`, same extractor) or reset it."""
        split = model.split
        if split is not None and personal_head == "keep" and self.head_for(model) is not None:
            self._save({**self._state, "bundle_version": model.version}, self._head)
            return
        if self._state.get("version") or self._state.get("previous"):
            log.info("personal head reset by bundle %s", model.version)
        extractor = split.extractor_sha256 if split else None
        last = self._state.get("last")
        self._save({"version": 0, "previous": None, "extractor_sha256": extractor,
                    "bundle_version": model.version, "last": last}, None)  # fmt: skip

    def rollback(self, model: LoadedModel) -> dict[str, Any]:
        """Serves the previous head again (the bundle's head when it was version 0).

        Raises:
            NoPersonalHead: nothing to go back from.
        """
        if self.head_for(model) is None or self._state.get("previous") is None:
            raise NoPersonalHead("no personal head to roll back; the bundle's head serves")
        previous = int(self._state["previous"])
        head = self._load_head(previous)
        state = {**self._state, "version": previous if head else 0, "previous": None}
        self._save(state, head)
        return self.health(model)

    def update(self, model: LoadedModel) -> dict[str, Any]:
        """The last trained head's change against the bundle's head, with its sample count.

        What federated averaging collects: weights, counts and metrics, never samples. The
        last trained head counts whether or not the device's gate installed it: the fleet's
        gate judges the average.

        Raises:
            NoSplitModel: the served bundle has no split model.
            NoPersonalHead: no head was trained on this bundle's extractor yet.
        """
        split = _split(model)
        trained, last = self._trained(model), self._state.get("last") or {}
        if trained is None:
            raise NoPersonalHead("no head trained on this bundle yet: POST /personalize first")
        base = split.base_head
        return {
            "bundle_version": model.version,
            "extractor_sha256": split.extractor_sha256,
            "base_head_sha256": split.base_head_sha256,
            "head_version": self.version,
            "shape": list(trained.shape),
            "dtype": "float32",
            "n_samples": int(last.get("n_train", 0)),
            "delta_kernel": _b64(trained.kernel - base.kernel),
            "delta_bias": _b64(trained.bias - base.bias),
            "metrics": {k: last[k] for k in UPDATE_METRICS if k in last},
        }

    def _trained(self, model: LoadedModel) -> Head | None:
        """The last head trained here, if it was trained from this bundle's split model."""
        split = model.split
        base = self._state.get("trained_base")
        if split is None or base != [split.extractor_sha256, split.base_head_sha256]:
            return None
        try:
            head = Head.from_bytes((self.root / TRAINED_FILE).read_bytes())
        except (OSError, EdgetuneError):
            return None
        return head if head.shape == split.base_head.shape else None

    def personalize(self, model: LoadedModel) -> dict[str, Any]:
        """Trains a head on the stored samples; installs it only if the device's gate passes.

        Raises:
            NoSplitModel: the served bundle has no split model.
            TooFewSamples: fewer classes with enough samples, or no held-out sample.
        """
        split = _split(model)
        started = time.perf_counter()
        spec = model.spec
        data = self.samples.load(spec.labels, (spec.height, spec.width, spec.channels))
        self._check_enough(data.labels, data.holdout, spec.labels)
        x = model.embed(data.pixels)
        train, val = _validation_split(data.labels, ~data.holdout, self.config.val_fraction)
        current = self.head_for(model) or split.base_head
        result = train_head(current, x[train], data.labels[train], x[val], data.labels[val],
                            self.config.train)  # fmt: skip
        hold_x, hold_y = x[data.holdout], data.labels[data.holdout]
        before, after = accuracy(current, hold_x, hold_y), accuracy(result.head, hold_x, hold_y)
        gain = round((after - before) * 100.0, 9)
        installed = gain > 0 and gain >= self.config.min_gain_points
        reason = (
            f"held-out accuracy {before:.2%} → {after:.2%} ({gain:+.2f} points); "
            f"{'installed' if installed else 'refused'}: needs >= {self.config.min_gain_points:g} points"
        )
        last = {"before": before, "after": after, "gain_points": gain, "installed": installed,
                "reason": reason, "n_train": int(len(train) - result.n_dropped),
                "n_val": int(len(val)), "n_holdout": int(len(hold_y)),
                "skipped_samples": data.skipped, **result.to_dict(),
                "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
        files.write_bytes(self.root / TRAINED_FILE, result.head.to_bytes(), sync=True)
        state = {**self._state, "extractor_sha256": split.extractor_sha256, "last": last,
                 "bundle_version": model.version,
                 "trained_base": [split.extractor_sha256, split.base_head_sha256]}  # fmt: skip
        head = self.head_for(model)
        if installed:
            version = int(self._state.get("latest", self._state.get("version", 0))) + 1
            files.write_bytes(self.root / f"head-{version}.npz", result.head.to_bytes(), sync=True)
            state.update(version=version, latest=version, previous=self.version)
            head = result.head
        last["head_version"] = state.get("version", 0) if head is not None else 0
        self._save(state, head)
        log.info("personalize: %s", reason)
        return {**last, "samples": self.samples.counts()}

    def _check_enough(
        self, labels: np.ndarray, holdout: np.ndarray, names: tuple[str, ...]
    ) -> None:
        counts = np.bincount(labels, minlength=len(names))
        enough = int(np.sum(counts >= self.config.min_per_class))
        if enough < self.config.min_classes or not holdout.any() or holdout.all():
            have = ", ".join(f"{n}={c}" for n, c in zip(names, counts, strict=True))
            raise TooFewSamples(
                f"personalize needs at least {self.config.min_per_class} samples in each of at "
                f"least {self.config.min_classes} classes (every {self.samples.holdout_every}th "
                f"of a class is held out); have {have}"
            )


def _split(model: LoadedModel):
    if model.split is None:
        raise NoSplitModel(f"bundle {model.version} has no split model; it cannot be personalized")
    return model.split


def _validation_split(
    labels: np.ndarray, usable: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices for training and for early stopping: per class, the newest `fraction` validates."""
    train, val = [], []
    for c in np.unique(labels[usable]):
        idx = np.flatnonzero(usable & (labels == c))
        n_val = int(round(fraction * len(idx))) if len(idx) >= 3 else 0
        train += list(idx[: len(idx) - n_val])
        val += list(idx[len(idx) - n_val :])
    return np.array(sorted(train), int), np.array(sorted(val), int)
