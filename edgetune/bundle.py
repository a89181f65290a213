"""Signed model bundles: what the pipeline ships and the only thing a device agent installs.

A bundle is one uncompressed tar holding four flat members:

- ``model.tflite``: the int8 model;
- ``samples.npz``: smoke-test inputs (``pixels``, uint8 ``(N, H, W, C)`` exactly as
  ``preprocessing.to_pixels`` makes them) and ``expected`` (the class index the same model
  gave for each in LiteRT on the build machine);
- ``manifest.json``: version, sha256 and size of every other file, labels, preprocessing
  spec, metrics, lineage (MLflow run, data fingerprint, code version), smoke threshold;
- ``manifest.sig``: a detached Ed25519 signature over the exact manifest bytes.

The tar is uncompressed on purpose: no member can be larger than the archive, so a device
that caps the upload size has capped everything it will hold in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import numpy as np
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
from pydantic.dataclasses import dataclass as pydantic_dataclass

from edgetune import code_version, files
from edgetune.config import STRICT, validate
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import PreprocessSpec
from edgetune.signing import KeyInput, load_private_key, load_public_key

MODEL_FILE = files.TFLITE_MODEL
SAMPLES_FILE = "samples.npz"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
# Files every bundle must list in its manifest; a bundle may list more (e.g. a README).
REQUIRED_FILES = (MODEL_FILE, SAMPLES_FILE)
# A version names a directory on the device, so it must be a safe file name.
# Matched with fullmatch (Python) or as a pydantic pattern (Rust regex, where `$` is the end
# of the text): "1.0.0\n" is not a version.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_MEMBER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class BundleRejected(EdgetuneError):
    """A bundle failed verification; the message is the one-line reason."""


def _spec(value: Any) -> PreprocessSpec:
    if isinstance(value, PreprocessSpec):
        return value
    if not isinstance(value, dict):
        raise ValueError("expected the preprocessing spec as an object")
    try:
        return PreprocessSpec.from_dict(value)
    except (TypeError, ValueError) as e:  # EdgetuneError is a ValueError
        raise ValueError(f"bad preprocessing spec ({e})") from None


@pydantic_dataclass(frozen=True, config=STRICT)
class FileEntry:
    """What the manifest says about one shipped file."""

    sha256: Annotated[StrictStr, Field(pattern=_SHA256_PATTERN.pattern)]
    bytes: Annotated[StrictInt, Field(ge=0)]


@pydantic_dataclass(frozen=True, config=STRICT)
class Manifest:
    """The parsed, validated manifest.json of a bundle (unknown fields are refused)."""

    version: Annotated[StrictStr, Field(pattern=VERSION_PATTERN.pattern)]
    created: StrictStr
    files: dict[str, FileEntry]
    labels: tuple[StrictStr, ...]
    preprocessing: Annotated[PreprocessSpec, BeforeValidator(_spec)]
    metrics: dict[str, Any]
    mlflow_run_id: StrictStr | None
    data_fingerprint: StrictStr | None
    code_version: StrictStr
    smoke_min_agreement: Annotated[float, Strict(), Field(ge=0.0, le=1.0)]

    @property
    def spec(self) -> PreprocessSpec:
        return self.preprocessing

    @field_validator("files")
    @classmethod
    def _files(cls, table: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in table:
            if not _MEMBER_PATTERN.fullmatch(name) or name in (MANIFEST_FILE, SIGNATURE_FILE):
                raise ValueError(f"{name!r} is not a shippable file name")
        missing = [name for name in REQUIRED_FILES if name not in table]
        if missing:
            raise ValueError(f"must list {', '.join(REQUIRED_FILES)}")
        return table

    @model_validator(mode="after")
    def _labels_match(self) -> Manifest:
        if self.labels != self.preprocessing.labels:
            raise ValueError("labels differ from the preprocessing labels")
        return self

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parses manifest bytes; raises BundleRejected saying which field is wrong."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleRejected(f"{MANIFEST_FILE} is not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise BundleRejected(f"{MANIFEST_FILE} is not a JSON object")
        return validate(cls, doc, MANIFEST_FILE, error=BundleRejected)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature, file list and hashes have all been checked.

    Attributes:
        manifest: the parsed manifest.
        manifest_bytes: the exact signed bytes of manifest.json.
        signature: the Ed25519 signature over `manifest_bytes`.
        files: the content of every listed file, by name.
    """

    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    files: Mapping[str, bytes]

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def model_bytes(self) -> bytes:
        return self.files[MODEL_FILE]

    @property
    def model_sha256(self) -> str:
        return self.manifest.files[MODEL_FILE].sha256

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """The smoke-test inputs (uint8 pixels) and the class indices expected for them."""
        return _read_samples(self.files[SAMPLES_FILE], self.manifest.spec)

    def write_to(self, directory: str | os.PathLike[str]) -> Path:
        """Writes every file, the manifest and its signature into `directory` (created).

        The directory can be opened again with `open_bundle`, which re-checks everything.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (directory / name).write_bytes(data)
        (directory / MANIFEST_FILE).write_bytes(self.manifest_bytes)
        (directory / SIGNATURE_FILE).write_bytes(self.signature)
        return directory


# ------------------------------------------------------------------------------- building


def build_bundle(
    out_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    samples: np.ndarray,
    expected: np.ndarray,
    *,
    version: str,
    spec: PreprocessSpec,
    metrics: Mapping[str, Any],
    mlflow_run_id: str | None,
    data_fingerprint: str | None,
    private_key: Ed25519PrivateKey | KeyInput,
    smoke_min_agreement: float = 1.0,
) -> Path:
    """Writes a signed bundle to `out_path` atomically.

    Args:
        out_path: the bundle file to write.
        model_path: the int8 `.tflite` to ship.
        samples: uint8 pixels `(N, H, W, C)` as `preprocessing.to_pixels` makes them.
        expected: the `N` class indices this model gave for `samples` in LiteRT.
        version: the release name; letters, digits and `._+-`, since it names a folder.
        spec: the preprocessing the device applies before the model.
        metrics: evaluation numbers recorded for people (JSON-serializable).
        mlflow_run_id: the run that produced the model, for lineage.
        data_fingerprint: the dataset fingerprint, for lineage.
        private_key: the signing key, or the path of its PEM file.
        smoke_min_agreement: the share of samples the device must classify as `expected`
            for the install to count as healthy.

    Returns:
        `out_path` as a Path.

    Raises:
        EdgetuneError: a bad argument (the message names it).
    """
    if not VERSION_PATTERN.fullmatch(version):
        raise EdgetuneError(f"bundle version {version!r}; accepted: {VERSION_PATTERN.pattern}")
    if not 0.0 <= smoke_min_agreement <= 1.0:
        raise EdgetuneError(f"smoke_min_agreement={smoke_min_agreement}; accepted: 0.0 to 1.0")
    key = (
        private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
    )
    if not Path(model_path).is_file():
        raise EdgetuneError(f"{model_path}: model file not found")
    payload = {
        MODEL_FILE: Path(model_path).read_bytes(),
        SAMPLES_FILE: _samples_npz(samples, expected, spec),
    }
    manifest = {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: _file_entry(data) for name, data in payload.items()},
        "labels": list(spec.labels),
        "preprocessing": spec.to_dict(),
        "metrics": dict(metrics),
        "mlflow_run_id": mlflow_run_id,
        "data_fingerprint": data_fingerprint,
        "code_version": code_version(),
        "smoke_min_agreement": float(smoke_min_agreement),
    }
    manifest_bytes = (json.dumps(manifest, indent=2, default=_json_number) + "\n").encode()
    members = {MANIFEST_FILE: manifest_bytes, SIGNATURE_FILE: key.sign(manifest_bytes), **payload}
    return files.write_bytes(out_path, pack_tar(members))


def pack_tar(members: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of flat members with fixed metadata (same input, same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _samples_npz(samples: np.ndarray, expected: np.ndarray, spec: PreprocessSpec) -> bytes:
    samples, expected = np.asarray(samples), np.asarray(expected)
    shape = (spec.height, spec.width, spec.channels)
    if samples.dtype != np.uint8 or samples.ndim != 4 or samples.shape[1:] != shape:
        raise EdgetuneError(
            f"bundle samples {samples.dtype}{list(samples.shape)}; expected uint8 [N, {', '.join(map(str, shape))}]"
        )
    if len(samples) == 0 or expected.shape != (len(samples),):
        raise EdgetuneError(
            f"bundle expected has shape {list(expected.shape)}; need one class index per sample "
            f"({len(samples)}, at least 1)"
        )
    if not np.issubdtype(expected.dtype, np.integer) or not (
        (expected >= 0).all() and (expected < len(spec.labels)).all()
    ):
        raise EdgetuneError(f"bundle expected must be class indices in 0..{len(spec.labels) - 1}")
    buffer = io.BytesIO()
    np.savez(buffer, pixels=samples, expected=expected.astype(np.int64))
    return buffer.getvalue()


def _json_number(value: Any) -> Any:
    # Metrics often arrive as NumPy scalars; JSON wants plain numbers.
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"metrics value of type {type(value).__name__} is not JSON")


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# ------------------------------------------------------------------------------ verifying


def open_bundle(
    data_or_path: bytes | str | os.PathLike[str],
    trusted_key: Ed25519PublicKey | KeyInput,
) -> VerifiedBundle:
    """Reads and verifies a bundle: tar bytes, a bundle file, or an installed bundle folder.

    Checks, in order: safe member names (flat, no traversal, no links, no duplicates), the
    Ed25519 signature over the manifest bytes (before the manifest is parsed, so nothing
    unsigned is interpreted), the manifest's fields, then that the files present are exactly
    those listed, with the listed sizes and sha256.

    Args:
        data_or_path: the bundle as bytes, or the path of a bundle file or folder.
        trusted_key: the public key bundles must be signed with, or its PEM path.

    Returns:
        The verified bundle.

    Raises:
        BundleRejected: the bundle fails a check; the message says which and why.
        EdgetuneError: the trusted key cannot be loaded.
    """
    key = trusted_key if isinstance(trusted_key, Ed25519PublicKey) else load_public_key(trusted_key)
    members = _read_members(data_or_path)
    manifest_bytes, signature = _pop(members, MANIFEST_FILE), _pop(members, SIGNATURE_FILE)
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleRejected(
            f"{SIGNATURE_FILE} does not verify: the manifest was changed or signed by an untrusted key"
        ) from None
    manifest = Manifest.from_bytes(manifest_bytes)
    _check_files(manifest, members)
    return VerifiedBundle(manifest, manifest_bytes, signature, MappingProxyType(members))


def peek_manifest(data_or_path: bytes | str | os.PathLike[str]) -> Manifest:
    """The manifest of a bundle, parsed but NOT verified: for display and routing only."""
    return Manifest.from_bytes(_pop(_read_members(data_or_path), MANIFEST_FILE))


def _read_members(data_or_path: bytes | str | os.PathLike[str]) -> dict[str, bytes]:
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        return _untar(bytes(data_or_path))
    path = Path(data_or_path)
    try:
        if path.is_dir():
            return _read_folder(path)
        return _untar(path.read_bytes())
    except OSError as e:
        raise BundleRejected(f"{path}: cannot read bundle ({e.strerror or e})") from None


def _read_folder(path: Path) -> dict[str, bytes]:
    members = {}
    for entry in sorted(path.iterdir()):
        if not entry.is_file() or entry.is_symlink():
            raise BundleRejected(f"{entry}: not a regular file; installed bundles hold only files")
        members[entry.name] = entry.read_bytes()
    return members


def _untar(data: bytes) -> dict[str, bytes]:
    """Member name to content; nothing is ever extracted to disk by tarfile itself."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                _check_member(info, members)
                handle = tar.extractfile(info)
                members[info.name] = handle.read() if handle else b""
    except (tarfile.TarError, EOFError) as e:
        raise BundleRejected(f"not an uncompressed tar bundle ({e})") from None
    return members


def _check_member(info: tarfile.TarInfo, seen: Mapping[str, bytes]) -> None:
    name = info.name
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise BundleRejected(f"unsafe member name {name!r} (absolute path or '..')")
    if not _MEMBER_PATTERN.fullmatch(name):
        raise BundleRejected(f"member {name!r} is not a flat file name; bundles hold no folders")
    if not info.isreg():
        raise BundleRejected(f"member {name!r} is not a regular file (links are refused)")
    if name in seen:
        raise BundleRejected(f"member {name!r} appears twice")


def _pop(members: dict[str, bytes], name: str) -> bytes:
    if name not in members:
        raise BundleRejected(f"{name} is missing")
    return members.pop(name)


def _check_files(manifest: Manifest, members: Mapping[str, bytes]) -> None:
    missing = sorted(set(manifest.files) - set(members))
    if missing:
        raise BundleRejected(f"listed in the manifest but missing: {', '.join(missing)}")
    extra = sorted(set(members) - set(manifest.files))
    if extra:
        raise BundleRejected(f"not listed in the manifest: {', '.join(extra)}")
    for name, entry in manifest.files.items():
        data = members[name]
        if len(data) != entry.bytes:
            raise BundleRejected(f"{name}: {len(data)} bytes, manifest says {entry.bytes}")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BundleRejected(f"{name}: sha256 does not match the manifest")


def _read_samples(data: bytes, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            pixels, expected = npz["pixels"], npz["expected"]
    except (OSError, ValueError, KeyError) as e:
        raise BundleRejected(f"{SAMPLES_FILE}: cannot read smoke samples ({e})") from None
    shape = (spec.height, spec.width, spec.channels)
    if pixels.dtype != np.uint8 or pixels.shape[1:] != shape or expected.shape != pixels.shape[:1]:
        raise BundleRejected(f"{SAMPLES_FILE}: pixels {list(pixels.shape)} do not match the spec")
    return pixels, expected
