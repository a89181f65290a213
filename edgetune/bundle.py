"""Signed model bundles: what the pipeline ships and the only thing a device agent installs.

A bundle is one uncompressed tar holding four flat members:

- ``model.tflite``: the int8 model;
- ``samples.npz``: smoke-test inputs (``pixels``, uint8 ``(N, H, W, C)`` exactly as
  ``preprocessing.to_pixels`` makes them) and ``expected`` (the class index the same model
  gave for each in LiteRT on the build machine);
- ``manifest.json``: version, sequence (see `edgetune.manifest`), sha256 and size of every
  other file, labels, preprocessing spec, metrics, lineage (MLflow run, data fingerprint,
  code version), smoke threshold;
- ``manifest.sig``: a detached Ed25519 signature over the exact manifest bytes;
- optionally the split model a device personalizes: ``extractor.tflite`` (int8, model
  input → the head's input) and ``head.npz`` (float32 kernel and bias, and their int8
  form), named by the manifest's ``split`` with ``personal_head: keep|reset``.

The tar is uncompressed and only plain regular members are read (a sparse member could
declare far more than the archive holds), so a device that caps the upload size has capped
everything it will hold in memory. Building lives in `edgetune.bundle_build`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgetune import files
from edgetune.bundle_build import build_bundle, pack_tar
from edgetune.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MEMBER_PATTERN,
    MODEL_FILE,
    SAMPLES_FILE,
    SIGNATURE_FILE,
    BundleRejected,
    FileEntry,
    Manifest,
    verify_signed,
)
from edgetune.preprocessing import PreprocessSpec
from edgetune.signing import KeyInput, load_public_key

__all__ = [
    "BundleRejected",
    "Manifest",
    "VerifiedBundle",
    "build_bundle",
    "open_bundle",
    "pack_tar",
]

# The largest bundle a device reads; every member's declared size is checked against it
# before a byte of that member is read.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
# Only plain files: no links, devices, folders, and no sparse members (whose holes
# tarfile would expand in memory: a 1.5 KB tar can declare gigabytes).
_PLAIN = (tarfile.REGTYPE, tarfile.AREGTYPE)


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
        """The bundle's version, from its signed manifest."""
        return self.manifest.version

    @property
    def model_bytes(self) -> bytes:
        """The .tflite model file's bytes."""
        return self.files[MODEL_FILE]

    @property
    def model_sha256(self) -> str:
        """What the device serves: the model file's SHA-256 (`Manifest.served_sha256`)."""
        return self.manifest.served_sha256

    @property
    def content_sha256(self) -> str:
        """Identifies what the bundle ships: its manifest without `sequence` and `created`.

        The same content re-signed later has the same id; any change to a file, the labels,
        the preprocessing or the smoke threshold gives another.
        """
        doc = json.loads(self.manifest_bytes)
        content = {k: v for k, v in doc.items() if k not in ("sequence", "created")}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """The smoke-test inputs (uint8 pixels) and the class indices expected for them."""
        return _read_samples(self.files[SAMPLES_FILE], self.manifest.spec)

    def write_to(self, directory: str | os.PathLike[str]) -> Path:
        """Writes every file, the manifest and its signature into `directory` (created).

        The directory can be opened again with `open_bundle`, which re-checks everything.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        contents = {
            **self.files,
            MANIFEST_FILE: self.manifest_bytes,
            SIGNATURE_FILE: self.signature,
        }
        for name, data in contents.items():
            files.write_synced(directory / name, data)
        files.fsync_dir(directory)  # the names are durable before the folder is published
        return directory


# ------------------------------------------------------------------------------ verifying


def open_bundle(
    data_or_path: bytes | str | os.PathLike[str],
    trusted_key: Ed25519PublicKey | KeyInput,
    *,
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> VerifiedBundle:
    """Reads and verifies a bundle: tar bytes, a bundle file, or an installed bundle folder.

    Checks, in order, reading as little as possible before each check: every member header
    (flat safe names, plain regular files only, no duplicates, declared sizes within
    `max_bytes`); the Ed25519 signature over the manifest bytes (before the manifest is
    parsed, so nothing unsigned is interpreted); the manifest's fields; that the members are
    exactly the files listed, with the listed sizes (before they are read); their sha256.

    Args:
        data_or_path: the bundle as bytes, or the path of a bundle file or folder.
        trusted_key: the public key bundles must be signed with, or its PEM path.
        max_bytes: the most the bundle's members may declare in total.

    Returns:
        The verified bundle.

    Raises:
        BundleRejected: the bundle fails a check; the message says which and why.
        EdgetuneError: the trusted key cannot be loaded.
    """
    key = trusted_key if isinstance(trusted_key, Ed25519PublicKey) else load_public_key(trusted_key)
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        return _open_tar(io.BytesIO(bytes(data_or_path)), key, max_bytes)
    path = Path(data_or_path)
    try:
        if path.is_dir():
            return _open_folder(path, key, max_bytes)
        with open(path, "rb") as f:
            return _open_tar(f, key, max_bytes)
    except OSError as e:
        raise BundleRejected(f"{path}: cannot read bundle ({e.strerror or e})") from None


def peek_manifest(data_or_path: bytes | str | os.PathLike[str]) -> Manifest:
    """The manifest of a bundle, parsed but NOT verified: for display and routing only."""
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        fileobj: IO[bytes] = io.BytesIO(bytes(data_or_path))
    else:
        fileobj = open(data_or_path, "rb")  # noqa: SIM115 - closed below
    with fileobj, _tar(fileobj) as tar:
        headers = _headers(tar, MAX_BUNDLE_BYTES)
        return Manifest.from_bytes(_read(tar, headers, MANIFEST_FILE, MAX_MANIFEST_BYTES))


def _tar(fileobj: IO[bytes]) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fileobj, mode="r:")
    except (tarfile.TarError, EOFError, ValueError, OverflowError) as e:
        raise BundleRejected(f"not an uncompressed tar bundle ({e})") from None


def _open_tar(fileobj: IO[bytes], key: Ed25519PublicKey, max_bytes: int) -> VerifiedBundle:
    with _tar(fileobj) as tar:
        headers = _headers(tar, max_bytes)
        manifest_bytes = _read(tar, headers, MANIFEST_FILE, MAX_MANIFEST_BYTES)
        signature = _read(tar, headers, SIGNATURE_FILE, 1024)
        verify_signed(manifest_bytes, signature, key, MANIFEST_FILE)
        manifest = Manifest.from_bytes(manifest_bytes)
        _check_listing(manifest, {name: info.size for name, info in headers.items()})
        contents = {
            name: _read(tar, headers, name, entry.bytes, entry)
            for name, entry in manifest.files.items()
        }
    return VerifiedBundle(manifest, manifest_bytes, signature, MappingProxyType(contents))


def _headers(tar: tarfile.TarFile, max_bytes: int) -> dict[str, tarfile.TarInfo]:
    """Every member's header, checked; no member's content has been read yet."""
    headers: dict[str, tarfile.TarInfo] = {}
    total = 0
    try:
        for info in tar:  # reads headers and seeks past the data
            _check_member(info, headers)
            total += info.size
            if total > max_bytes:
                raise BundleRejected(f"members declare more than the limit of {max_bytes} bytes")
            headers[info.name] = info
    except (tarfile.TarError, EOFError, ValueError, OverflowError) as e:
        raise BundleRejected(f"not an uncompressed tar bundle ({e})") from None
    return headers


def _check_member(info: tarfile.TarInfo, seen: Mapping[str, tarfile.TarInfo]) -> None:
    name = info.name
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise BundleRejected(f"unsafe member name {name!r} (absolute path or '..')")
    if not MEMBER_PATTERN.fullmatch(name):
        raise BundleRejected(f"member {name!r} is not a flat file name; bundles hold no folders")
    if info.type not in _PLAIN or info.sparse is not None:
        raise BundleRejected(
            f"member {name!r} is not a plain regular file (links, devices and sparse files are refused)"
        )
    if name in seen:
        raise BundleRejected(f"member {name!r} appears twice")


def _read(
    tar: tarfile.TarFile,
    headers: Mapping[str, tarfile.TarInfo],
    name: str,
    limit: int,
    entry: FileEntry | None = None,
) -> bytes:
    """One member's content, read only if its declared size is within `limit`."""
    if name not in headers:
        raise BundleRejected(f"{name} is missing")
    info = headers[name]
    if info.size > limit:
        raise BundleRejected(f"{name}: declares {info.size} bytes; at most {limit} accepted")
    handle = tar.extractfile(info)
    data = handle.read() if handle else b""
    if len(data) != info.size:
        raise BundleRejected(f"{name}: truncated ({len(data)} of {info.size} bytes)")
    if entry is not None and hashlib.sha256(data).hexdigest() != entry.sha256:
        raise BundleRejected(f"{name}: sha256 does not match the manifest")
    return data


def _check_listing(manifest: Manifest, sizes: Mapping[str, int]) -> None:
    """The members are exactly the listed files, with the listed sizes (nothing read yet)."""
    present = set(sizes) - {MANIFEST_FILE, SIGNATURE_FILE}
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise BundleRejected(f"listed in the manifest but missing: {', '.join(missing)}")
    extra = sorted(present - set(manifest.files))
    if extra:
        raise BundleRejected(f"not listed in the manifest: {', '.join(extra)}")
    for name, entry in manifest.files.items():
        if sizes[name] != entry.bytes:
            raise BundleRejected(f"{name}: {sizes[name]} bytes, manifest says {entry.bytes}")


def _open_folder(path: Path, key: Ed25519PublicKey, max_bytes: int) -> VerifiedBundle:
    """An installed bundle folder, checked like a tar: signature first, sizes before reads."""
    sizes: dict[str, int] = {}
    for entry in sorted(path.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            raise BundleRejected(f"{entry}: not a regular file; installed bundles hold only files")
        sizes[entry.name] = entry.stat().st_size
    if sum(sizes.values()) > max_bytes:
        raise BundleRejected(f"{path}: more than the limit of {max_bytes} bytes")
    for name, limit in ((MANIFEST_FILE, MAX_MANIFEST_BYTES), (SIGNATURE_FILE, 1024)):
        if sizes.get(name, 0) > limit or name not in sizes:
            raise BundleRejected(f"{path / name}: missing or over {limit} bytes")
    manifest_bytes = (path / MANIFEST_FILE).read_bytes()
    signature = (path / SIGNATURE_FILE).read_bytes()
    verify_signed(manifest_bytes, signature, key, MANIFEST_FILE)
    manifest = Manifest.from_bytes(manifest_bytes)
    _check_listing(manifest, sizes)
    contents = {}
    for name, entry in manifest.files.items():
        contents[name] = (path / name).read_bytes()
        if hashlib.sha256(contents[name]).hexdigest() != entry.sha256:
            raise BundleRejected(f"{name}: sha256 does not match the manifest")
    return VerifiedBundle(manifest, manifest_bytes, signature, MappingProxyType(contents))


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
