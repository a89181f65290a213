"""Where the new head goes on a user's model, what input it takes, how its pixels are scaled."""

from __future__ import annotations

import difflib
from typing import Any

from edgetune.errors import EdgetuneError

POOLING = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")
# Layers that may sit between the feature layer and the classifier's output.
HEAD_LAYERS = ("Dense", "Dropout", "Activation", "Softmax", "Reshape", "BatchNormalization")
# Named normalizations `model_normalization` accepts: (scale, offset) on 0..255 pixels.
NORMALIZATIONS = {
    "unit": (1 / 255, 0.0),  # 0..1
    "symmetric": (2 / 255, -1.0),  # -1..1 (MobileNet, Xception preprocess_input)
    "raw": (1.0, 0.0),  # 0..255, the model rescales inside
}
# Layers that scale raw pixels inside the model: a model starting with one takes 0..255.
RESCALING = ("Rescaling", "Normalization")


def check_input(model: Any, source: str) -> tuple[int, int, int]:
    """The model's (height, width, channels) when it has exactly one image input.

    Raises:
        EdgetuneError: several inputs, or one that is not (height, width, 1 or 3).
    """
    if len(model.inputs) != 1:
        raise EdgetuneError(
            f"{source}: the model has {len(model.inputs)} inputs; edgetune fine-tunes single-image models"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3) or None in shape:
        raise EdgetuneError(
            f"{source}: input shape {shape} is not an image; accepted: (height, width, 1 or 3) with a fixed size"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def find_feature_layer(
    model: Any,
    requested: str = "",
    source: str = "model",
    renamed: dict[str, str] | None = None,
) -> tuple[str, str]:
    """(layer name, why) of the layer whose output feeds the new head.

    With `requested`, that layer (an original or a rebuilt name). Without it: the last
    global pooling or flatten layer, unless the old classifier already sits before it (a
    pooled class map, as in all-convolutional nets): then the input of that classifier;
    else the input of the last Dense layer.

    Args:
        model: the flat model.
        requested: feature_layer as the user gave it; empty: found automatically.
        source: the file, for error messages.
        renamed: the file's layer names -> the flat model's, where they differ; the
            nearest names of an unknown `requested` are listed as the file spells them.

    Raises:
        EdgetuneError: `requested` names no layer (the nearest names are listed), or the
            model has neither pooling nor Dense layer to cut at.
    """
    names = [layer.name for layer in model.layers]
    if requested:
        if requested in names:
            return requested, "feature_layer as given"
        raise EdgetuneError(
            f"{source}: feature_layer={requested!r} is not a layer of the model; "
            f"nearest: {', '.join(_nearest(requested, names, renamed or {})) or '(none)'}"
        )
    layers = model.layers
    n_out = int(model.outputs[0].shape[-1])
    pools = [i for i, layer in enumerate(layers) if type(layer).__name__ in POOLING]
    if pools and _only_head_after(layers, pools[-1]):
        pool = layers[pools[-1]]
        if int(pool.output.shape[-1]) != n_out or len(layers) - pools[-1] > 3:
            return pool.name, f"last {type(pool).__name__} layer"
        producer = _producer_of(pool)
        before = _producer_of(producer) if producer is not None else None
        if before is not None:
            return before.name, f"input of {producer.name}, the old classifier before {pool.name}"
    dense = [layer for layer in layers if type(layer).__name__ == "Dense"]
    if dense:
        feeder = _producer_of(dense[-1])
        while feeder is not None and type(feeder).__name__ == "Dropout":
            feeder = _producer_of(feeder)
        if feeder is not None:
            return feeder.name, f"input of the last Dense layer {dense[-1].name}"
    raise EdgetuneError(
        f"{source}: no global pooling, flatten or Dense layer to put a new head after; set feature_layer"
    )


def _only_head_after(layers: list[Any], index: int) -> bool:
    return all(type(layer).__name__ in HEAD_LAYERS for layer in layers[index + 1 :])


def _nearest(requested: str, names: list[str], renamed: dict[str, str]) -> list[str]:
    """The five names closest to `requested`, as the file spells them (and as rebuilt)."""
    present = set(names)
    spelled = {old: new for old, new in renamed.items() if new in present}
    spelled.update({n: n for n in names if n not in spelled.values()})
    near = difflib.get_close_matches(requested, list(spelled), n=5, cutoff=0.3)
    return [n if spelled[n] == n else f"{n} ({spelled[n]})" for n in near]


def _producer_of(layer: Any) -> Any | None:
    """The layer whose output is `layer`'s (single) input, skipping pass-through layers."""
    inbound = layer._inbound_nodes[0].inbound_layers if layer._inbound_nodes else []
    inbound = inbound if isinstance(inbound, list) else [inbound]
    if len(inbound) != 1:
        return None
    producer = inbound[0]
    if type(producer).__name__ in ("Activation", "BatchNormalization", "ReLU"):
        return _producer_of(producer)
    return None if type(producer).__name__ == "InputLayer" else producer


def cut_at(model: Any, layer_name: str) -> Any:
    """The flat tf_keras model from the input to `layer_name`'s output, pooled to a vector."""
    import tf_keras

    x = model.get_layer(layer_name).output
    if len(x.shape) == 4:  # a feature map (a cut before the old pooling): pool it here
        x = tf_keras.layers.GlobalAveragePooling2D(name="features")(x)
    return tf_keras.Model(model.input, x, name=model.name)


def parse_normalization(override: str) -> tuple[float, float]:
    """(scale, offset) of a `model_normalization` value.

    Raises:
        EdgetuneError: none of "unit", "symmetric", "raw" or "SCALE,OFFSET".
    """
    if override in NORMALIZATIONS:
        return NORMALIZATIONS[override]
    try:
        scale, offset = (float(v) for v in override.split(","))
    except ValueError:
        raise EdgetuneError(
            f"model_normalization={override!r}; accepted: {', '.join(NORMALIZATIONS)} or SCALE,OFFSET"
        ) from None
    return scale, offset


def normalization(model: Any, override: str = "") -> tuple[dict[str, float], str]:
    """({"scale", "offset"} on 0..255 pixels, why) for the model's input.

    A model that rescales its input itself (a Rescaling or Normalization layer near the
    input) takes raw 0..255 pixels; otherwise 0..1 is assumed, and `override` ("unit",
    "symmetric", "raw" or "SCALE,OFFSET") says otherwise.

    Raises:
        EdgetuneError: an override that is none of those.
    """
    if override:
        scale, offset = parse_normalization(override)
        return {"scale": scale, "offset": offset}, f"model_normalization={override}"
    for layer in model.layers[:4]:
        if type(layer).__name__ in RESCALING:
            return {"scale": 1.0, "offset": 0.0}, f"the model rescales inside ({layer.name})"
    scale, offset = NORMALIZATIONS["unit"]
    return {"scale": scale, "offset": offset}, "assumed 0..1 (set model_normalization otherwise)"
