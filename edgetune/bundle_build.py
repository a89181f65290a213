"""Building signed bundles (what the pipeline ships); `edgetune.bundle` verifies them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgetune import code_version, files
from edgetune.errors import EdgetuneError
from edgetune.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    SAMPLES_FILE,
    SIGNATURE_FILE,
    VERSION_PATTERN,
    Manifest,
    next_sequence,
)
from edgetune.preprocessing import PreprocessSpec
from edgetune.signing import KeyInput, load_private_key
from edgetune.split import EXTRACTOR_FILE, HEAD_FILE, PERSONAL_HEAD_MODES, Head


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
    sequence: int | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    lineage: Mapping[str, str] | None = None,
    split: Mapping[str, bytes] | None = None,
    personal_head: str = "reset",
    serve: str = "model",
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
        sequence: larger than any this key signed before (default: microseconds since the
            epoch); devices refuse a bundle whose sequence is not above what they hold.
        extra_files: more signed members by file name (the firmware C array, for people
            who flash the model; the agent installs but does not read them).
        lineage: what traces the model back to its run, data, code and parameters
            (`edgetune trace` reads it; see edgetune.lineage).
        split: the split model by file name, extractor.tflite and head.npz (see
            `edgetune.split`), shipped signed and described by the manifest's `split`.
        personal_head: `keep` or `reset`: what a device does with the head it trained
            itself when this bundle installs (the manifest's `split.personal_head`).
        serve: `model` or `split`: what the device serves without a personal head (the
            full int8 file, or the extractor with this bundle's head).

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
    clash = sorted(
        set(payload) & set(extra_files or {}) | set(extra_files or {}) & set(split or {})
    )
    if clash:
        raise EdgetuneError(f"bundle extra_files {clash}: names taken by the bundle itself")
    payload.update(extra_files or {})
    split_entry = _split_entry(split, personal_head, spec)
    if serve != "model" and not split_entry:
        raise EdgetuneError(f"serve={serve!r} needs a split model; accepted without one: model")
    if split_entry:
        split_entry["serve"] = serve
    payload.update(split or {})
    manifest = {
        "version": version,
        "sequence": sequence or next_sequence(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: _file_entry(data) for name, data in payload.items()},
        "labels": list(spec.labels),
        "preprocessing": spec.to_dict(),
        "metrics": dict(metrics),
        "mlflow_run_id": mlflow_run_id,
        "data_fingerprint": data_fingerprint,
        "code_version": code_version(),
        "smoke_min_agreement": float(smoke_min_agreement),
        "lineage": {k: str(v) for k, v in (lineage or {}).items()},
        **({"split": split_entry} if split_entry else {}),
    }
    manifest_bytes = (json.dumps(manifest, indent=2, default=_json_number) + "\n").encode()
    Manifest.from_bytes(manifest_bytes)  # the builder refuses what a device would refuse
    members = {MANIFEST_FILE: manifest_bytes, SIGNATURE_FILE: key.sign(manifest_bytes), **payload}
    return files.write_bytes(out_path, pack_tar(members))


def _split_entry(
    split: Mapping[str, bytes] | None, personal_head: str, spec: PreprocessSpec
) -> dict[str, Any] | None:
    """The manifest's `split` for the split model's files (None without them)."""
    if personal_head not in PERSONAL_HEAD_MODES:
        raise EdgetuneError(
            f"personal_head={personal_head!r}; accepted: {', '.join(PERSONAL_HEAD_MODES)}"
        )
    if not split:
        return None
    if set(split) != {EXTRACTOR_FILE, HEAD_FILE}:
        raise EdgetuneError(
            f"bundle split files {sorted(split)}; expected {EXTRACTOR_FILE} and {HEAD_FILE}"
        )
    dim, classes = Head.from_bytes(split[HEAD_FILE]).shape
    if classes != len(spec.labels):
        raise EdgetuneError(f"{HEAD_FILE}: {classes} classes for {len(spec.labels)} labels")
    return {"extractor": EXTRACTOR_FILE, "head": HEAD_FILE, "embedding_dim": dim,
            "classes": classes, "personal_head": personal_head}  # fmt: skip


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
