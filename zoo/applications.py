"""Keras 3 Keras-Applications models whose layers do not map one to one onto tf_keras.

Keras 3's MobileNetV3 uses an `Activation("hard_silu")` that tf_keras does not have (tf_keras
builds hard-swish from TF ops), and ConvNeXt a `LayerScale` layer that tf_keras.layers lacks:
such a model cannot be rebuilt layer by layer from its config. When its layer names say
which Keras Applications architecture it is, the matching `tf_keras.applications` builder
makes the same network (weights=None, the file's input shape, the same top, preprocessing
and width) and every weight is copied by layer name and weight role. Keras 3 spells the
names differently (`expanded_conv_depthwise_bn` for tf_keras' `expanded_conv/depthwise/
BatchNorm`); both are compared in one canonical spelling.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetune.errors import EdgetuneError

# Widths tried around the one the layer shapes suggest (alpha is not stored in a file).
ALPHA_STEP = 0.05
ALPHA_TRIES = 4


@dataclass(frozen=True)
class Family:
    """An architecture: its tf_keras builder and the canonical layer names that identify it."""

    builder: str
    required: tuple[str, ...]  # canonical layer names every variant has
    absent: tuple[str, ...] = ()  # names a sibling architecture has and this one lacks
    width_layer: str = ""  # a layer whose channel count scales with alpha
    full_width: int = 0  # its channels at alpha=1
    top: str = "logits"  # the classifier layer of include_top=True


FAMILIES = (
    Family(
        "MobileNetV3Large",
        ("conv", "expanded_conv_14_project", "conv_1"),
        width_layer="expanded_conv_14_project",
        full_width=160,
    ),
    Family(
        "MobileNetV3Small",
        ("conv", "expanded_conv_10_project", "conv_1"),
        absent=("expanded_conv_11_project",),
        width_layer="expanded_conv_10_project",
        full_width=96,
    ),
    *(
        Family(
            f"ConvNeXt{size}",
            (
                f"convnext_{size.lower()}_stem",
                f"convnext_{size.lower()}_stage_3_block_0_depthwise_conv",
            ),
            top=f"convnext_{size.lower()}_head_dense",
        )
        for size in ("Tiny", "Small", "Base", "Large", "XLarge")
    ),
)


def canonical(name: str) -> str:
    """One spelling for a layer name in Keras 3 and tf_keras (`Conv_1/BatchNorm` -> `conv_1_bn`)."""
    name = name.lower().replace("/", "_")
    return re.sub(r"batchnorm", "bn", name)


def detect(model: Any) -> Family | None:
    """The Keras Applications architecture `model`'s layer names identify, or None."""
    names = {canonical(layer.name) for layer in model.layers}
    for family in FAMILIES:
        if all(n in names for n in family.required) and not any(n in names for n in family.absent):
            return family
    return None


def rebuild(model: Any, source: str, problem: str) -> tuple[Any, str]:
    """A tf_keras.applications model equal to the Keras 3 `model`, weights copied.

    Args:
        model: a Keras 3 model (a whole file or a model nested in one).
        source: the file, for error messages.
        problem: why the layers did not map one to one (for the error when no
            architecture matches).

    Returns:
        The tf_keras model and a description (`tf_keras.applications.X(alpha=...)`).

    Raises:
        EdgetuneError: no known architecture matches, or a tensor does not map (the first
            one, named with its shape).
    """
    family = detect(model)
    if family is None:
        known = ", ".join(f.builder for f in FAMILIES)
        raise EdgetuneError(
            f"{source}: {problem}; not a Keras Applications model edgetune can rebuild ({known})"
        )
    import tf_keras

    builder = getattr(tf_keras.applications, family.builder)
    first_problem = ""
    for kwargs in _candidates(model, family, builder):
        built = builder(**kwargs)
        first_problem = copy_by_name(model, built, source)
        if not first_problem:
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "weights")
            return built, f"tf_keras.applications.{family.builder}({shown})"
    raise EdgetuneError(
        f"{source}: rebuilt as tf_keras.applications.{family.builder}, but {first_problem}"
    )


def _candidates(model: Any, family: Family, builder: Any) -> list[dict[str, Any]]:
    """Builder arguments to try: the file's shape, top and preprocessing; widths near its own."""
    layers = {canonical(layer.name): layer for layer in model.layers}
    accepted = set(inspect.signature(builder).parameters)
    top = layers.get(family.top)
    kwargs: dict[str, Any] = {
        "input_shape": tuple(int(d) for d in model.inputs[0].shape[1:]),
        "weights": None,
        "include_top": top is not None,
    }
    if top is not None:
        kwargs["classes"] = int(top.weights[0].shape[-1]) if top.weights else 1000
        activation = getattr(model.layers[-1], "activation", None)
        kwargs["classifier_activation"] = getattr(activation, "__name__", "softmax") or None
    else:
        last = type(model.layers[-1]).__name__
        kwargs["pooling"] = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}.get(last)
    if "include_preprocessing" in accepted:
        kwargs["include_preprocessing"] = any(
            type(layer).__name__ in ("Rescaling", "Normalization") for layer in model.layers
        )
    if "minimalistic" in accepted:
        kwargs["minimalistic"] = not any("squeeze_excite" in n for n in layers)
    if "alpha" not in accepted or not family.width_layer:
        return [kwargs]
    # Alpha scales the channels (rounded to multiples of 8): try the widths on a 0.05 grid
    # nearest to the ratio to alpha=1, then the usual ones.
    guess = int(layers[family.width_layer].weights[0].shape[-1]) / family.full_width
    grid = sorted(
        (round(ALPHA_STEP * i, 2) for i in range(1, 41)), key=lambda a: (abs(a - guess), a)
    )
    alphas = sorted({*grid[:ALPHA_TRIES], 0.35, 0.75, 1.0}, key=lambda a: abs(a - guess))
    return [{**kwargs, "alpha": a} for a in alphas[: ALPHA_TRIES + 1]]


def name_map(source_model: Any, target: Any) -> dict[str, str]:
    """Layer names of `source_model` -> the same layers' names in `target`, where they differ."""
    spelled = {canonical(layer.name): layer.name for layer in target.layers}
    return {
        layer.name: spelled[canonical(layer.name)]
        for layer in source_model.layers
        if canonical(layer.name) in spelled and spelled[canonical(layer.name)] != layer.name
    }


def copy_by_name(source_model: Any, target: Any, source: str) -> str:
    """Copies every weight of `source_model` into `target` by layer name and weight role.

    Returns:
        "" when every tensor of both models got its counterpart; else the first that did
        not, in one phrase (nothing is half-copied: the weights are assigned only then).
    """
    from edgetune.zoo.flatten import weight_role, weight_value

    targets = {canonical(layer.name): layer for layer in target.layers if layer.weights}
    pairs = []
    for layer in source_model.layers:
        if not layer.weights:
            continue
        counterpart = targets.pop(canonical(layer.name), None)
        dst = {weight_role(counterpart, w): w for w in counterpart.weights} if counterpart else {}
        for weight in layer.weights:
            role = weight_role(layer, weight)
            if len(layer.weights) == len(dst) == 1:
                # a layer's only weight: Keras 3 names some by a counter (LayerScale's
                # `variable_18` is tf_keras' `gamma`)
                role = next(iter(dst))
            where = f"tensor {layer.name}/{role} {tuple(weight.shape)} of {source}"
            target_weight = dst.pop(role, None)
            if target_weight is None:
                return f"{where} has no counterpart"
            if tuple(target_weight.shape) != tuple(weight.shape):
                return f"{where} does not fit {tuple(target_weight.shape)}"
            pairs.append((target_weight, weight))
        if dst:
            return f"layer {layer.name} of {source}: rebuilt weights {sorted(dst)} got no value"
    if targets:
        return f"the rebuilt layer {next(iter(targets.values())).name} got no weights from {source}"
    for target_weight, weight in pairs:
        target_weight.assign(np.asarray(weight_value(weight)))
    return ""
