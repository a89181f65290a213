"""What a bundle's signature covers: the manifest, and the signed rollback order.

Both carry a `sequence`: a number the signer makes larger with every document it signs
(microseconds since the epoch at signing, by default). A device accepts only a sequence
above the highest it has accepted, so an old, validly signed bundle cannot be replayed to
downgrade it; going back to an earlier model takes a new signed rollback order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    BeforeValidator,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from edgetune import files
from edgetune.config import STRICT, validate
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import PreprocessSpec

MODEL_FILE = files.TFLITE_MODEL
SAMPLES_FILE = "samples.npz"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
ROLLBACK_ORDER = "rollback order"
# Files every bundle must list in its manifest; a bundle may list more (e.g. a README).
REQUIRED_FILES = (MODEL_FILE, SAMPLES_FILE)
# A version names a directory on the device, so it must be a safe file name. Matched with
# fullmatch (Python) or as a pydantic pattern (Rust regex, where `$` is the end of the
# text), never with re.match and `$`, which accepts "1.0.0\n".
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
MEMBER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# A signed document is small; anything larger is refused before it is parsed or verified.
MAX_MANIFEST_BYTES = 1 << 20

Version = Annotated[StrictStr, Field(pattern=VERSION_PATTERN.pattern)]
Sha256 = Annotated[StrictStr, Field(pattern=SHA256_PATTERN.pattern)]
Sequence = Annotated[StrictInt, Field(ge=1)]


class BundleRejected(EdgetuneError):
    """A bundle (or rollback order) failed verification; the message is the one-line reason."""


def next_sequence() -> int:
    """A fresh sequence number: microseconds since the epoch, larger than any signed before."""
    return time.time_ns() // 1000


def verify_signed(data: bytes, signature: bytes, key: Ed25519PublicKey, what: str) -> None:
    """Checks an Ed25519 signature before anything in `data` is parsed.

    Raises:
        BundleRejected: too large, or the signature does not verify.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleRejected(f"{what}: {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise BundleRejected(
            f"{what}: signature does not verify: changed, or signed by an untrusted key"
        ) from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleRejected(f"{what} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BundleRejected(f"{what} is not a JSON object")
    return doc


def _spec(value: Any) -> PreprocessSpec:
    if isinstance(value, PreprocessSpec):
        return value
    if not isinstance(value, dict):
        raise ValueError("expected the preprocessing spec as an object")
    try:
        return PreprocessSpec.from_dict(value)
    except (TypeError, ValueError) as e:  # EdgetuneError is a ValueError
        raise ValueError(f"bad preprocessing spec ({e})") from None


@dataclass(frozen=True, config=STRICT)
class FileEntry:
    """What the manifest says about one shipped file."""

    sha256: Sha256
    bytes: Annotated[StrictInt, Field(ge=0)]


@dataclass(frozen=True, config=STRICT)
class SplitEntry:
    """Which shipped files are the split model a device personalizes (see `edgetune.split`).

    Attributes:
        extractor: the int8 feature extractor (.tflite): model input → the head's input.
        head: the head's float32 weights (.npz: kernel [D, C], bias [C], and int8 form).
        embedding_dim: D, the extractor's output size.
        classes: C, one per label.
        personal_head: what a device does with a head it trained itself when this bundle
            installs: `keep` serving it (only if its extractor is this bundle's, byte for
            byte) or `reset` to this bundle's head.
        serve: what answers /predict without a personal head: `model` (the full int8 file)
            or `split` (extractor + this head; a federated bundle, whose head is new).
    """

    extractor: Annotated[StrictStr, Field(pattern=MEMBER_PATTERN.pattern)]
    head: Annotated[StrictStr, Field(pattern=MEMBER_PATTERN.pattern)]
    embedding_dim: Annotated[StrictInt, Field(ge=1)]
    classes: Annotated[StrictInt, Field(ge=2)]
    personal_head: Literal["keep", "reset"] = "reset"
    serve: Literal["model", "split"] = "model"


@dataclass(frozen=True, config=STRICT)
class Manifest:
    """The parsed, validated manifest.json of a bundle (unknown fields are refused)."""

    version: Version
    sequence: Sequence
    created: StrictStr
    files: dict[str, FileEntry]
    labels: tuple[StrictStr, ...]
    preprocessing: Annotated[PreprocessSpec, BeforeValidator(_spec)]
    metrics: dict[str, Any]
    mlflow_run_id: StrictStr | None
    data_fingerprint: StrictStr | None
    code_version: StrictStr
    smoke_min_agreement: Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
    # Where the model came from (parent MLflow run, pipeline job, git commit, image, data
    # fingerprint, zoo id or model file sha256, parameters' hash): `edgetune trace` reads it.
    lineage: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # The split model for on-device personalization; None in bundles without one.
    split: SplitEntry | None = None

    @property
    def served_sha256(self) -> str:
        """Names what the device serves: the model file's sha256, or that of extractor + head.

        Serving the split model, it is the sha256 of "<extractor sha256>+<head sha256>":
        a federated bundle ships the same model file with a new head; deploy decides by this.
        """
        split = self.split
        if split is None or split.serve != "split":
            return self.files[MODEL_FILE].sha256
        pair = f"{self.files[split.extractor].sha256}+{self.files[split.head].sha256}"
        return hashlib.sha256(pair.encode()).hexdigest()

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing the device must apply before the model."""
        return self.preprocessing

    @field_validator("files")
    @classmethod
    def _files(cls, table: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in table:
            if not MEMBER_PATTERN.fullmatch(name) or name in (MANIFEST_FILE, SIGNATURE_FILE):
                raise ValueError(f"{name!r} is not a shippable file name")
        if any(name not in table for name in REQUIRED_FILES):
            raise ValueError(f"must list {', '.join(REQUIRED_FILES)}")
        return table

    @model_validator(mode="after")
    def _labels_match(self) -> Manifest:
        if self.labels != self.preprocessing.labels:
            raise ValueError("labels differ from the preprocessing labels")
        split = self.split
        if split is not None:
            unlisted = [f for f in (split.extractor, split.head) if f not in self.files]
            if unlisted:
                raise ValueError(f"split names files not listed: {', '.join(unlisted)}")
            if split.classes != len(self.labels):
                raise ValueError(
                    f"split head has {split.classes} classes for {len(self.labels)} labels"
                )
        return self

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parses manifest bytes; raises BundleRejected saying which field is wrong."""
        return validate(cls, _json_object(data, MANIFEST_FILE), MANIFEST_FILE, error=BundleRejected)


@dataclass(frozen=True, config=STRICT)
class RollbackOrder:
    """A signed order to serve an earlier, still installed version again.

    Attributes:
        version: the version to return to.
        model_sha256: the sha256 of that version's model, so a name cannot stand for another.
        sequence: above every sequence the device has accepted, like a new bundle's.
        created: when it was signed (for people).
    """

    version: Version
    model_sha256: Sha256
    sequence: Sequence
    created: StrictStr


def sign_rollback_order(
    key: Ed25519PrivateKey, version: str, model_sha256: str, sequence: int | None = None
) -> bytes:
    """The body of `POST /rollback`: the order's JSON and its signature, base64 in JSON."""
    order = {
        "version": version,
        "model_sha256": model_sha256,
        "sequence": sequence or next_sequence(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    validate(RollbackOrder, order, ROLLBACK_ORDER)  # the signer refuses what a device would
    data = json.dumps(order).encode()
    body = {"order": base64.b64encode(data).decode(), "signature": base64.b64encode(key.sign(data))}
    return json.dumps(
        {k: v if isinstance(v, str) else v.decode() for k, v in body.items()}
    ).encode()


def open_rollback_order(body: bytes, key: Ed25519PublicKey) -> RollbackOrder:
    """Verifies and parses a rollback order made by `sign_rollback_order`.

    Raises:
        BundleRejected: malformed, too large, badly signed, or with a bad field.
    """
    doc = _json_object(body, ROLLBACK_ORDER)
    try:
        data = base64.b64decode(doc["order"], validate=True)
        signature = base64.b64decode(doc["signature"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise BundleRejected(
            f"{ROLLBACK_ORDER}: expected JSON {{order, signature}}, both base64"
        ) from None
    verify_signed(data, signature, key, ROLLBACK_ORDER)
    return validate(RollbackOrder, _json_object(data, ROLLBACK_ORDER), ROLLBACK_ORDER,
                    error=BundleRejected)  # fmt: skip
