"""convert's split model: the int8 feature extractor (input → the head's input) and the head.

The device personalizes by training a new head on the extractor's embeddings (see
`edgetune.split`), so the extractor is cut from the same QAT model the full int8 file comes
from, and the head's weights are that model's own float32 weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgetune import files
from edgetune.split import EXTRACTOR_FILE, HEAD_FILE, Head

log = logging.getLogger(__name__)


def head_layer(model: Any) -> tuple[Any, str]:
    """The model's output Dense layer (QAT-wrapped or not), or None and why it has none."""
    layer = model.layers[-1]
    inner = getattr(layer, "layer", layer)  # a QuantizeWrapper holds the Dense it quantizes
    if type(inner).__name__ != "Dense":
        return None, f"the output layer {layer.name} is {type(inner).__name__}, not Dense"
    # QAT wraps the activation too (QuantizeAwareActivation keeps the original as .activation).
    activation = getattr(getattr(inner.activation, "activation", inner.activation), "__name__", "")
    if activation not in ("softmax", "linear"):
        return None, f"the output layer {layer.name} has activation {activation}, not softmax"
    return layer, ""


def head_weights(layer: Any) -> Head:
    """The float32 kernel and bias of a Dense layer, read from its variables.

    A QAT wrapper replaces its inner layer's `kernel` attribute by the fake-quantized
    tensor; the variable itself keeps the trained float weights.
    """
    by_name = {w.name.rsplit("/", 1)[-1]: np.array(w, dtype=np.float32) for w in layer.weights}
    kernel = by_name["kernel:0"]
    bias = by_name.get("bias:0", np.zeros(kernel.shape[1], np.float32))
    return Head(kernel, bias)


def extractor_model(model: Any, layer: Any) -> Any:
    """The sub-model from the model's input to the head layer's input (shares its weights)."""
    import tf_keras as keras

    return keras.Model(model.input, layer.input, name=f"{model.name}_extractor")


def write_split(
    model: Any, representative: np.ndarray, out_dir: str | os.PathLike
) -> dict[str, Any]:
    """Writes extractor.tflite (full-integer int8) and head.npz into `out_dir`; reports both.

    Returns:
        {"extractor": TfliteCheck dict, "head": {"bytes", "embedding_dim", "classes"}}, or
        {"problem": why} when the model has no Dense softmax output to split at (nothing
        is written then: the full int8 file still ships).
    """
    from edgetune.components.convert.core import check_tflite, to_int8_tflite

    layer, problem = head_layer(model)
    if layer is None:
        log.warning("no split model: %s", problem)
        return {"problem": problem}
    head = head_weights(layer)
    extractor = extractor_model(model, layer)
    out = files.artifact_dir(out_dir)
    extractor_path = files.write_bytes(
        out / EXTRACTOR_FILE, to_int8_tflite(extractor, representative)
    )
    head_bytes = head.to_bytes()
    files.write_bytes(out / HEAD_FILE, head_bytes)
    check = check_tflite(extractor_path, representative[:1])
    dim, classes = head.shape
    return {
        "extractor": check.to_dict(),
        "head": {"bytes": len(head_bytes), "embedding_dim": dim, "classes": classes},
    }


def split_files(model_dir: str | os.PathLike) -> dict[str, bytes]:
    """extractor.tflite and head.npz from a convert output folder ({} when it has none)."""
    paths = [Path(model_dir) / name for name in (EXTRACTOR_FILE, HEAD_FILE)]
    if not all(p.is_file() for p in paths):
        return {}
    return {p.name: p.read_bytes() for p in paths}
