"""What a device agent does, apart from HTTP: install, roll back, report health, predict."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgetune.agent.limits import check_image_size
from edgetune.agent.personal import NoSplitModel, PersonalizeConfig, Personalizer
from edgetune.agent.runtime import LoadedModel, SmokeResult
from edgetune.agent.samples import SampleStore
from edgetune.agent.store import NoPreviousVersion, State, VersionConflict, VersionStore
from edgetune.bundle import MAX_BUNDLE_BYTES, VerifiedBundle, open_bundle
from edgetune.errors import EdgetuneError
from edgetune.manifest import open_rollback_order

STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"
STATUS_EMPTY = "empty"

log = logging.getLogger(__name__)


class NoModel(EdgetuneError):
    """Nothing is installed yet, so there is nothing to predict with."""


class UnknownLabel(EdgetuneError):
    """A sample's label is not one of the served model's labels."""


class PreconditionFailed(EdgetuneError):
    """The caller's If-Match does not name what the agent serves now (someone else changed it)."""


@dataclass(frozen=True)
class Served:
    """The model being served and how its smoke test went on this device."""

    model: LoadedModel
    smoke: SmokeResult

    @property
    def status(self) -> str:
        """`ok` when the model passed its smoke test on this device, else `degraded`."""
        return STATUS_OK if self.smoke.passed else STATUS_DEGRADED


class Agent:
    """Serves one model at a time from a state folder, trusting one signing key.

    Installs and rollbacks are serialized by one lock; predictions read the served model
    through a single attribute, so they never see a half-switched state and are not held
    up by an install that is still loading and smoke-testing its model.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        trusted_key: Ed25519PublicKey,
        max_bundle_bytes: int = MAX_BUNDLE_BYTES,
        *,
        samples: SampleStore | None = None,
        personalize: PersonalizeConfig | None = None,
    ) -> None:
        self.store = VersionStore(state_dir)
        self.personal = Personalizer(
            state_dir, samples if samples is not None else SampleStore(state_dir), personalize
        )
        self._key = trusted_key
        self._max_bytes = max_bundle_bytes
        self._lock = threading.Lock()
        self._served: Served | None = None
        self._state = State()
        self._error: str | None = None

    def restore(self) -> None:
        """Cleans what a crash left, then serves the state's version, verified and smoke-tested again.

        A version that no longer verifies or loads is reported through `health()` rather
        than raised: an agent that refuses to start could not be repaired by a new push.
        """
        with self._lock:
            state = self.store.state()
            removed = self.store.clean(state)
            if removed:
                log.info("removed %d leftover entries: %s", len(removed), ", ".join(removed))
            if state is None:
                self._error = "the state file is unreadable; push a bundle to repair it"
                return
            self._state = state
            if not state.current:
                return
            try:
                self._served = self._load_installed(state.current)
            except EdgetuneError as e:
                log.error("cannot restore %s: %s", state.current, e)
                # Unauthenticated callers read this: the reason, without the state path.
                reason = str(e).replace(str(self.store.root), "<state>")
                self._error = f"cannot restore {state.current}: {reason}"

    @property
    def trusted_key(self) -> Ed25519PublicKey:
        """The key bundles, rollback orders and pull channels must be signed with."""
        return self._key

    @property
    def etag(self) -> str:
        """Names the served state; changes with every install or rollback (If-Match)."""
        served = self._served
        return f'"{self._state.sequence}:{served.model.model_sha256 if served else "empty"}"'

    def install(
        self, bundle_source: bytes | str | os.PathLike[str], if_match: str | None = None
    ) -> dict[str, Any]:
        """Verifies, loads, smoke-tests, installs and serves a pushed bundle.

        The model is loaded and smoke-tested before the pointer moves, so a model LiteRT
        cannot load is refused and the served version stays. A smoke test below the
        bundle's threshold still installs it, reported `degraded`: the deployer decides
        whether to roll back. Pushing what is served already is a no-op.

        Raises:
            BundleRejected: the bundle fails verification.
            ModelLoadError: LiteRT cannot serve the model.
            VersionConflict: the version name was installed before with another model, or
                the sequence is not above the highest accepted (a downgrade or replay).
            PreconditionFailed: `if_match` is given and does not match `etag`.
        """
        bundle = open_bundle(bundle_source, self._key, max_bytes=self._max_bytes)
        with self._lock:
            self._check_precondition(if_match)
            state = self._state
            known = state.history.get(bundle.version)
            if known is not None and known != bundle.content_sha256:
                raise VersionConflict(
                    f"version {bundle.version} was installed before with other contents; "
                    "give the new bundle a new version"
                )
            if state.current == bundle.version and self._served is not None:
                return self.report()  # the same model again
            if bundle.manifest.sequence <= state.sequence:
                raise VersionConflict(
                    f"bundle sequence {bundle.manifest.sequence} is not above {state.sequence}, "
                    "the highest accepted here; going back needs a signed rollback order"
                )
            served = self._load(bundle)
            self.store.install(bundle)
            self._state = self.store.activate(state, bundle)
            self._serve(served)
            split = bundle.manifest.split
            self.personal.on_install(served.model, split.personal_head if split else "reset")
        return self.report()

    def rollback(self, order_body: bytes, if_match: str | None = None) -> dict[str, Any]:
        """Serves an installed earlier version again, as a signed rollback order says.

        Raises:
            BundleRejected: the order is malformed or not signed by the trusted key.
            VersionConflict: the order's sequence is not above the highest accepted.
            NoPreviousVersion: the named version (with that model) is not installed.
            PreconditionFailed: `if_match` is given and does not match `etag`.
        """
        order = open_rollback_order(order_body, self._key)
        with self._lock:
            self._check_precondition(if_match)
            state = self._state
            if order.sequence <= state.sequence:
                raise VersionConflict(
                    f"rollback order sequence {order.sequence} is not above {state.sequence}"
                )
            if not self.store.version_dir(order.version).is_dir():
                raise NoPreviousVersion(f"version {order.version} is not installed here")
            served = self._load_installed(order.version)
            if served.model.model_sha256 != order.model_sha256:
                raise NoPreviousVersion(
                    f"version {order.version} is installed here with another model than the order names"
                )
            self._state = self.store.return_to(state, order.version, order.sequence)
            self._serve(served)
        return self.report()

    def report(self) -> dict[str, Any]:
        """The push and rollback answer: version, status, smoke result and what identifies it."""
        health = self.health()
        keys = ("version", "status", "smoke", "previous", "sequence", "model_sha256", "etag")
        return {key: health[key] for key in keys}

    def health(self) -> dict[str, Any]:
        """Status (`ok`, `degraded` or `empty`), versions, smoke result, model hash, etag."""
        served, state = self._served, self._state
        common = {
            "previous": state.previous,
            "sequence": state.sequence,
            "etag": self.etag,
        }
        if served is None:
            empty = {"status": STATUS_EMPTY, "version": None, "smoke": None, "model_sha256": None}
            personal = {"personalization": self.personal.health(None)}
            return {**empty, **common, "error": self._error, **personal}
        return {
            "status": served.status,
            "version": served.model.version,
            "smoke": served.smoke.to_dict(),
            "model_sha256": served.model.model_sha256,
            **common,
            "error": None,
            "personalization": self.personal.health(served.model),
        }

    def predict(self, image_bytes: bytes, max_pixels: int) -> dict[str, Any]:
        """Classifies an encoded image with the served model (refusing more than `max_pixels`).

        Raises:
            NoModel: nothing is installed.
            ImageDecodeError: the bytes are not an accepted image.
        """
        model = self.served_model()
        return model.predict(image_bytes, max_pixels, head=self.personal.head_for(model))

    def add_sample(self, image_bytes: bytes, label: str, max_pixels: int) -> dict[str, Any]:
        """Keeps one labelled image on the device for personalization; answers with counts only.

        Raises:
            NoModel: nothing is installed (the spec that shapes the pixels comes with it).
            NoSplitModel: the served bundle cannot be personalized.
            UnknownLabel: `label` is not one of the model's labels.
            ImageDecodeError: the bytes are not an accepted image.
            ImageTooLarge: the header declares more than `max_pixels`.
            SampleTooLarge: the sample alone exceeds the store's byte limit.
        """
        model = self.served_model()
        if model.split is None:
            raise NoSplitModel(
                f"bundle {model.version} has no split model; it cannot be personalized"
            )
        if label not in model.spec.labels:
            raise UnknownLabel(f"label {label!r} is not one of {list(model.spec.labels)}")
        check_image_size(image_bytes, max_pixels)
        dropped = self.personal.samples.add(model.pixels(image_bytes, max_pixels), label)
        return {"stored": True, "dropped": dropped, "samples": self.personal.samples.counts()}

    def personalize(self) -> dict[str, Any]:
        """Trains and gates a personal head (see `Personalizer.personalize`)."""
        return self.personal.personalize(self.served_model())

    def rollback_head(self) -> dict[str, Any]:
        """Serves the previous personal head again (see `Personalizer.rollback`)."""
        return self.personal.rollback(self.served_model())

    def head_update(self) -> dict[str, Any]:
        """The personal head's weight change and sample count (see `Personalizer.update`)."""
        return self.personal.update(self.served_model())

    def served_model(self) -> LoadedModel:
        """The model being served.

        Raises:
            NoModel: nothing is installed.
        """
        served = self._served
        if served is None:
            raise NoModel("no model installed; push a bundle first")
        return served.model

    def _check_precondition(self, if_match: str | None) -> None:
        if if_match is not None and if_match.strip() != self.etag:
            raise PreconditionFailed(
                f"If-Match {if_match.strip()} does not match the served state {self.etag}"
            )

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
