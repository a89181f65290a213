"""A user's whole Keras model file as a backbone: Keras 2 .h5, Keras 3 .keras/.h5, SavedModel.

Whatever the file, the result is one flat tf_keras Functional model (zoo.flatten) from the
image input to a feature layer, ready for fine_tune's new head:
- a Keras 2 .h5 (any 2.x, 2.0-era files included) or a tf_keras SavedModel loads in tf_keras;
- a Keras 3 file (.keras, or .h5 written by Keras 3) loads in Keras 3 (`import keras`,
  installed beside tf_keras) and is rebuilt layer by layer in tf_keras; the rebuilt model's
  outputs are compared with the original's on random inputs and the difference recorded.
Every problem with the file is one EdgetuneError line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetune.errors import EdgetuneError
from edgetune.zoo import feature_layer as features
from edgetune.zoo.flatten import flatten_model

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
KINDS = ("keras2-h5", "keras3-h5", "keras3-keras", "savedmodel")
COMPARE_SAMPLES = 4


@dataclass(frozen=True)
class LoadedModel:
    """A model file loaded and flattened into tf_keras, with what loading it measured."""

    model: Any  # the whole flat tf_keras model, classifier included
    uri: str
    kind: str
    keras_version: str
    load_seconds: float
    max_abs_diff: float  # rebuilt vs original outputs on random inputs
    tensors_copied: int
    renamed: dict[str, str]
    # Keras 3 (sub)models rebuilt from tf_keras.applications because their layers do not
    # map one to one (zoo.applications), e.g. "tf_keras.applications.MobileNetV3Small(...)".
    applications: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        """The loading facts, JSON-ready (for selection.json and MLflow)."""
        return {
            "uri": self.uri,
            "kind": self.kind,
            "keras_version": self.keras_version,
            "load_seconds": round(self.load_seconds, 3),
            "max_abs_diff": self.max_abs_diff,
            "tensors_copied": self.tensors_copied,
            "layers_renamed": len(self.renamed),
            "rebuilt_from": list(self.applications),
        }


def file_kind(path: Path) -> tuple[str, str]:
    """(kind, keras_version) of a local model file or folder, read from its header.

    Raises:
        EdgetuneError: not a model file, a weights-only file, or an unreadable one.
    """
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel", ""
        raise EdgetuneError(f"{path}: a folder but not a SavedModel (no saved_model.pb)")
    if not path.is_file():
        raise EdgetuneError(f"{path}: no such model file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == HDF5_MAGIC:
        return _h5_kind(path)
    if magic[:4] == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        except (zipfile.BadZipFile, ValueError):
            raise EdgetuneError(f"{path}: unreadable or truncated .keras archive") from None
        if "config.json" not in names:
            raise EdgetuneError(f"{path}: a zip archive without config.json, not a .keras model")
        return "keras3-keras", str(meta.get("keras_version", "3"))
    raise EdgetuneError(
        f"{path}: not a model file; accepted: Keras .h5, Keras 3 .keras, a SavedModel folder"
    )


def _h5_kind(path: Path) -> tuple[str, str]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            has_weights = "model_weights" in f
    except OSError as e:
        raise EdgetuneError(f"{path}: unreadable or truncated HDF5 file ({e})") from None
    if "model_config" not in attrs:
        raise EdgetuneError(
            f"{path}: a weights-only HDF5 file; edgetune needs a whole model (model.save)"
        )
    if not has_weights:
        raise EdgetuneError(f"{path}: HDF5 model file without weights")
    version = _text(attrs.get("keras_version", ""))
    if version.startswith("3."):
        return "keras3-h5", version
    if version and not version.startswith("2."):
        raise EdgetuneError(f"{path}: written by Keras {version}; accepted: Keras 2.x and 3.x")
    return "keras2-h5", version or "2"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_model_file(uri: str) -> LoadedModel:
    """Loads a whole model from a local path or fsspec URI as one flat tf_keras model.

    Raises:
        EdgetuneError: the file is not a model, is truncated, has several or non-image
            inputs, or a Keras 3 tensor does not map onto the rebuilt tf_keras model.
    """
    start = time.perf_counter()
    with local_copy(uri) as path:
        kind, version = file_kind(path)
        original = _load(path, kind)
        features.check_input(original, uri)
        rebuilt = flatten_model(original, source=uri)
        diff = _max_abs_diff(original, rebuilt.model)
    return LoadedModel(
        model=rebuilt.model,
        uri=uri,
        kind=kind,
        keras_version=version,
        load_seconds=time.perf_counter() - start,
        max_abs_diff=diff,
        tensors_copied=rebuilt.tensors_copied,
        renamed=rebuilt.renamed,
        applications=tuple(rebuilt.applications),
    )


def _load(path: Path, kind: str) -> Any:
    try:
        if kind.startswith("keras3"):
            return _load_keras3(path, kind)
        import tf_keras

        return tf_keras.models.load_model(path, compile=False)
    except EdgetuneError:
        raise
    except Exception as e:  # h5py, TF and Keras raise many types for a damaged file
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise EdgetuneError(f"{path.name}: cannot load it as a {kind} model ({first})") from None


def _load_keras3(path: Path, kind: str) -> Any:
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except ValueError:
        if kind != "keras3-keras":
            raise
    # Files from Keras 3.8 list a nested model's single output as a list of one; later
    # Keras 3 releases read that as two tensors ("expects 1 input(s), but it received 2").
    with tempfile.TemporaryDirectory() as tmp:
        patched = Path(tmp) / path.name
        _unwrap_single_io(path, patched)
        return keras.models.load_model(patched, compile=False)


def _unwrap_single_io(src: Path, dst: Path) -> None:
    """A copy of a .keras archive whose nested Functional configs name one input/output bare."""

    def fix(config: dict[str, Any]) -> None:
        for layer in config.get("config", {}).get("layers", []):
            if layer.get("class_name") in ("Functional", "Sequential"):
                inner = layer["config"]
                for key in ("input_layers", "output_layers"):
                    value = inner.get(key)
                    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                        inner[key] = value[0]
                fix(layer)

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                fix(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def _max_abs_diff(original: Any, rebuilt: Any) -> float:
    """Largest output difference between the two models on a few random inputs."""
    shape = tuple(int(d) for d in original.inputs[0].shape[1:])
    x = np.random.default_rng(0).uniform(0.0, 1.0, (COMPARE_SAMPLES, *shape)).astype(np.float32)
    a = [np.asarray(o) for o in _as_list(original(x, training=False))]
    b = [np.asarray(o) for o in _as_list(rebuilt(x, training=False))]
    return float(max(np.max(np.abs(p - q)) for p, q in zip(a, b, strict=True)))


def _as_list(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path to the model at `uri`; a remote file or folder is copied to a temp dir."""
    import fsspec

    try:
        fs, fs_path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as e:
        raise EdgetuneError(f"model_uri {uri}: cannot open it ({e})") from None
    if "file" in _protocols(fs):
        yield Path(fs_path)
        return
    if not fs.exists(fs_path):
        raise EdgetuneError(f"model_uri {uri}: not found")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / (Path(fs_path.rstrip("/")).name or "model")
        fs.get(fs_path, str(local), recursive=fs.isdir(fs_path))
        yield local


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return tuple(protocol) if isinstance(protocol, (list, tuple)) else (protocol,)
