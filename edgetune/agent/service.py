"""What a device agent does, apart from HTTP: install, roll back, report health, predict."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgetune.agent.runtime import LoadedModel, SmokeResult
from edgetune.agent.store import NoPreviousVersion, Pointer, VersionStore
from edgetune.bundle import VerifiedBundle, open_bundle
from edgetune.errors import EdgetuneError

STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"
STATUS_EMPTY = "empty"

log = logging.getLogger(__name__)


class NoModel(EdgetuneError):
    """Nothing is installed yet, so there is nothing to predict with."""


@dataclass(frozen=True)
class Served:
    """The model being served and how its smoke test went on this device."""

    model: LoadedModel
    smoke: SmokeResult

    @property
    def status(self) -> str:
        return STATUS_OK if self.smoke.passed else STATUS_DEGRADED


class Agent:
    """Serves one model at a time from a state folder, trusting one signing key.

    Installs and rollbacks are serialized by one lock; predictions read the served model
    through a single attribute, so they never see a half-switched state and are not held
    up by an install that is still loading and smoke-testing its model.
    """

    def __init__(self, state_dir: str | os.PathLike[str], trusted_key: Ed25519PublicKey) -> None:
        self.store = VersionStore(state_dir)
        self._key = trusted_key
        self._lock = threading.Lock()
        self._served: Served | None = None
        self._pointer = Pointer()
        self._error: str | None = None

    def restore(self) -> None:
        """Serves the version the state folder points at, verified and smoke-tested again.

        A version that no longer verifies or loads is reported through `health()` rather
        than raised: an agent that refuses to start could not be repaired by a new push.
        """
        with self._lock:
            self._pointer = self.store.pointer()
            if not self._pointer.current:
                return
            try:
                self._served = self._load_installed(self._pointer.current)
            except EdgetuneError as e:
                self._error = f"cannot restore {self._pointer.current}: {e}"
                log.error("%s", self._error)

    def install(self, data: bytes) -> dict[str, Any]:
        """Verifies, loads, smoke-tests, installs and serves a pushed bundle.

        The model is loaded and smoke-tested before the pointer moves, so a model LiteRT
        cannot load is refused and the served version stays. A smoke test below the
        bundle's threshold still installs it, reported `degraded`: the deployer decides
        whether to roll back.

        Raises:
            BundleRejected: the bundle fails verification.
            ModelLoadError: LiteRT cannot serve the model.
            VersionConflict: the version is installed with other contents.
        """
        bundle = open_bundle(data, self._key)
        with self._lock:
            served = self._load(bundle)
            self.store.install(bundle)
            self._pointer = self.store.activate(bundle.version)
            self._serve(served)
        return self.report()

    def rollback(self) -> dict[str, Any]:
        """Serves the previous version again, after verifying and smoke-testing it.

        Raises:
            NoPreviousVersion: nothing to roll back to.
            EdgetuneError: the previous version no longer verifies or loads.
        """
        with self._lock:
            previous = self._pointer.previous
            if not previous:
                raise NoPreviousVersion("no previous version to roll back to")
            served = self._load_installed(previous)
            self._pointer = self.store.rollback()
            self._serve(served)
        return self.report()

    def report(self) -> dict[str, Any]:
        """The push and rollback answer: version, status and smoke result."""
        health = self.health()
        return {key: health[key] for key in ("version", "status", "smoke", "previous")}

    def health(self) -> dict[str, Any]:
        """Status (`ok`, `degraded` or `empty`), versions, smoke result and model hash."""
        served, pointer = self._served, self._pointer
        if served is None:
            return {
                "status": STATUS_EMPTY,
                "version": None,
                "previous": pointer.previous,
                "smoke": None,
                "model_sha256": None,
                "error": self._error,
            }
        return {
            "status": served.status,
            "version": served.model.version,
            "previous": pointer.previous,
            "smoke": served.smoke.to_dict(),
            "model_sha256": served.model.model_sha256,
            "error": None,
        }

    def predict(self, image_bytes: bytes) -> dict[str, Any]:
        """Classifies an encoded image with the served model.

        Raises:
            NoModel: nothing is installed.
            ImageDecodeError: the bytes are not an accepted image.
        """
        served = self._served
        if served is None:
            raise NoModel("no model installed; push a bundle first")
        return served.model.predict(image_bytes)

    def _load_installed(self, version: str) -> Served:
        return self._load(open_bundle(self.store.version_dir(version), self._key))

    def _load(self, bundle: VerifiedBundle) -> Served:
        model = LoadedModel(bundle)
        smoke = model.smoke_test(bundle)
        return Served(model, smoke)

    def _serve(self, served: Served) -> None:
        self._served, self._error = served, None
        smoke = served.smoke
        log.info(
            "serving %s: %s, smoke agreement %.2f (min %.2f, n=%d)",
            served.model.version,
            served.status,
            smoke.agreement,
            smoke.min_agreement,
            smoke.n,
        )
