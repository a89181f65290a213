"""The model zoo registry: entries, where their weights are, and how to build a backbone."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, StrictStr
from pydantic.dataclasses import dataclass

from edgetune.config import STRICT, load_yaml, packaged_file, validate
from edgetune.errors import EdgetuneError

WEIGHT_SOURCES = ("package", "keras-imagenet", "uri", "model-file")
# A user's whole model file (zoo.model_source): weights and graph come from the file.
MODEL_FILE_ARCHITECTURE = "model-file"
KERAS_CACHE = Path("~/.keras/models")


def _input_shape(value: Any) -> Any:
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)
    ):
        raise ValueError("expected [height, width, channels], three positive integers")
    return tuple(value)


def _normalization(value: dict[str, float]) -> dict[str, float]:
    return {"scale": float(value.get("scale", 1.0)), "offset": float(value.get("offset", 0.0))}


def _weights(value: dict[str, str]) -> dict[str, str]:
    source = value.get("source")
    if source not in WEIGHT_SOURCES:
        raise ValueError(f"weights.source={source!r}; accepted: {', '.join(WEIGHT_SOURCES)}")
    needed = {"package": "file", "keras-imagenet": "cache_file"}.get(source, "uri")
    if not value.get(needed):
        raise ValueError(f"weights.{needed} is missing; weights.source={source} needs it")
    return value


def _architecture(value: str) -> str:
    # Refused when the zoo is read (up front), not 40 s into fine_tune.
    if value not in ("digitnet", MODEL_FILE_ARCHITECTURE) and not re.fullmatch(
        r"keras:[A-Z][A-Za-z0-9]+", value
    ):
        raise ValueError(f"accepted: digitnet, keras:<Application>, {MODEL_FILE_ARCHITECTURE}")
    return value


Count = Annotated[StrictInt, Field(ge=0)]


@dataclass(frozen=True, config=STRICT)
class ZooEntry:
    """One pretrained backbone the pipeline can start from. Fields as in zoo/registry.yaml.

    Validated on construction (pydantic): a missing, misspelt or malformed field is one
    EdgetuneError line naming the file, the entry and the field (`from_dict`).
    """

    id: Annotated[StrictStr, Field(min_length=1)]
    architecture: Annotated[StrictStr, AfterValidator(_architecture)]
    input_shape: Annotated[tuple[int, int, int], BeforeValidator(_input_shape)]
    normalization: Annotated[
        dict[Literal["scale", "offset"], float], AfterValidator(_normalization)
    ]
    weights: Annotated[dict[StrictStr, StrictStr], AfterValidator(_weights)]
    params: Count
    macs: Count
    peak_activation_bytes: Count
    top1: Annotated[float, Field(ge=0.0, le=1.0, strict=True)]
    arena_bytes: Count = 0  # estimated TFLite Micro arena at int8 (zoo.costs); 0: unknown
    arguments: dict[StrictStr, Any] = dataclass_field(default_factory=dict)
    unfreeze_top_layers: Count = 10
    domain: StrictStr = ""
    description: StrictStr = ""
    top1_source: StrictStr = ""

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict (the input shape as a list)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "zoo entry") -> ZooEntry:
        """The entry from one item of registry.yaml; EdgetuneError names `where`, the id and the field."""
        where = f"{where} ({d.get('id', '?')})" if isinstance(d, dict) else where
        return validate(cls, d, where)


def load_zoo(path: str | os.PathLike | None = None) -> dict[str, ZooEntry]:
    """Zoo entries by id, from `path` or the packaged zoo/registry.yaml."""
    path = Path(path) if path else packaged_file("edgetune.zoo", "registry.yaml")
    doc = load_yaml(path)
    entries = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise EdgetuneError(f"{path}: expected a non-empty list under 'models'")
    zoo: dict[str, ZooEntry] = {}
    for i, raw in enumerate(entries):
        entry = ZooEntry.from_dict(raw, where=f"{path}: models[{i}]")
        if entry.id in zoo:
            raise EdgetuneError(f"{path}: zoo id {entry.id!r} is defined twice")
        zoo[entry.id] = entry
    return zoo


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_problem(entry: ZooEntry, allow_download: bool = False) -> str | None:
    """Why the entry's pretrained weights cannot be had right now, or None when they can."""
    source = entry.weights["source"]
    if source == "package":
        path = packaged_file("edgetune.zoo", entry.weights["file"])
        if not path.is_file():
            return f"packaged weights {path} missing (run `make zoo`)"
        expected = entry.weights.get("sha256", "")
        if expected and sha256_file(path) != expected:
            return f"packaged weights {path.name} do not match their sha256 in the registry"
        return None
    if source == "keras-imagenet":
        cached = (KERAS_CACHE / entry.weights["cache_file"]).expanduser()
        if cached.is_file() or allow_download:
            return None
        return f"ImageNet weights not in the Keras cache ({cached}) and downloads are off (allow_download=false)"
    import fsspec

    uri = entry.weights["uri"]
    try:
        fs, fs_path = fsspec.core.url_to_fs(uri)
        return None if fs.exists(fs_path) else f"weights not found at {uri}"
    except Exception as e:  # unknown protocol, missing backend, unreachable store
        return f"weights at {uri} unreachable ({e})"


def build_backbone(entry: ZooEntry, pretrained: bool = True) -> Any:
    """The entry's backbone (input → feature vector) with its pretrained weights loaded.

    Args:
        entry: the zoo entry.
        pretrained: False builds the same architecture with random weights (the
            from-scratch baseline).
    """
    from edgetune.zoo import architectures
    from edgetune.zoo.flatten import flatten_model

    if entry.architecture == MODEL_FILE_ARCHITECTURE:
        from edgetune.zoo.model_source import build_from_file

        return build_from_file(entry, pretrained=pretrained)
    if entry.architecture == "digitnet":
        model = architectures.digitnet(entry.input_shape, **entry.arguments)
    else:  # keras:<Application>, the only other architecture a ZooEntry accepts
        weights = "imagenet" if pretrained and entry.weights["source"] == "keras-imagenet" else None
        model = architectures.keras_application(
            entry.architecture.removeprefix("keras:"), entry.input_shape, weights, **entry.arguments
        )
        # Unique, non-automatic layer names (`tf.math.multiply_3` in MobileNetV3): tfmot's
        # QAT rewrite collides with automatic names.
        model = flatten_model(model, source=entry.id).model
    if pretrained and entry.weights["source"] in ("package", "uri"):
        problem = weights_problem(entry)
        if problem:
            raise EdgetuneError(f"zoo entry {entry.id}: {problem}")
        with _local_copy(entry) as path:
            model.load_weights(str(path))
    return model


@contextlib.contextmanager
def _local_copy(entry: ZooEntry) -> Iterator[Path]:
    """A local path to the entry's weights, fetching a remote URI to a temporary file."""
    if entry.weights["source"] == "package":
        yield packaged_file("edgetune.zoo", entry.weights["file"])
        return
    import fsspec

    uri = entry.weights["uri"]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / (Path(uri).name or "weights.h5")
        with fsspec.open(uri, "rb") as src:
            local.write_bytes(src.read())
        yield local
