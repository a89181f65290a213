"""One flat tf_keras Functional model from any Keras model graph (tf_keras or Keras 3).

The graph is walked from the model's outputs back to its input; every layer is rebuilt as a
fresh tf_keras layer from its config and called on the rebuilt inputs, so models nested
inside the model (a backbone inside a classifier, a Sequential block) dissolve into one
graph: tfmot's QAT cannot quantize a nested model. Weights are copied by layer and weight
role and every tensor is counted: Keras 3 and tf_keras name some weights differently, and a
silent partial copy would train from random weights.

Layers keep their names unless a name is Keras' automatic one (`conv2d_3`) or occurs twice
after flattening: tfmot's QAT rewrite creates layers with automatic names too and collided
with such names in old files ("Inputs have incompatible shapes").
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetune.errors import EdgetuneError

# Keras 3 calls a depthwise layer's weight `kernel`; tf_keras calls it `depthwise_kernel`.
ROLE_ALIASES = {("DepthwiseConv2D", "kernel"): "depthwise_kernel"}
# Config keys dropped before a Keras 3 config is read by tf_keras: initial values do not
# matter (every weight is copied) and Keras 3 writes them in a form tf_keras cannot read.
_DROPPED_SUFFIXES = ("_initializer", "_constraint")


@dataclass
class Rebuilt:
    """A flat tf_keras model and what rebuilding it did."""

    model: Any
    renamed: dict[str, str] = field(default_factory=dict)
    tensors_copied: int = 0
    # Keras 3 (sub)models rebuilt from tf_keras.applications (zoo.applications), described.
    applications: list[str] = field(default_factory=list)


def snake_case(name: str) -> str:
    """Keras' automatic layer-name stem for a class name (Conv2D -> conv2d)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def is_automatic_name(layer_name: str, class_name: str) -> bool:
    """True for names Keras generates itself: `conv2d`, `conv2d_3`, `tf.math.add_2`."""
    stem = re.sub(r"_\d+$", "", layer_name)
    return (
        stem == snake_case(class_name)
        or layer_name.startswith("tf.")
        or (class_name in ("Input", "InputLayer") and stem in ("input", "input_layer"))
    )


def flatten_model(model: Any, source: str = "model") -> Rebuilt:
    """Rebuilds `model` (tf_keras or Keras 3) as one flat tf_keras Functional model.

    Args:
        model: a single-input Functional or Sequential model, possibly with nested models.
        source: the file the model came from, for error messages.

    Raises:
        EdgetuneError: a layer has no tf_keras equivalent, or a weight tensor could not be
            copied (named, with its shape).
    """
    walker = _Walker(source)
    image = _input_like(model.inputs[0], walker)
    outputs = walker.call_model(model, [image])
    import tf_keras

    flat = tf_keras.Model(image, outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    walker.copy_weights()
    return Rebuilt(
        model=flat,
        renamed=walker.renamed,
        tensors_copied=walker.copied,
        applications=walker.applications,
    )


def _input_like(tensor: Any, walker: _Walker) -> Any:
    import tf_keras

    layer = tensor._keras_history[0]
    name = layer.name if not is_automatic_name(layer.name, "Input") else "image"
    walker.used.add(name)
    return tf_keras.Input(tuple(tensor.shape[1:]), name=name)


class _Walker:
    """Rebuilds layers in graph order; remembers source → new tensors and layers."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tensors: dict[int, Any] = {}
        self.layers: dict[int, tuple[Any, Any]] = {}  # id(old) -> (old, new)
        self.used: set[str] = set()
        self.renamed: dict[str, str] = {}
        self.copied = 0
        self.applications: list[str] = []

    def call_model(self, model: Any, inputs: list[Any]) -> list[Any]:
        """Runs `model`'s graph on already rebuilt `inputs`; returns the rebuilt outputs.

        A Keras 3 model with a layer that has no one-to-one tf_keras equivalent is first
        replaced by the matching tf_keras.applications model (zoo.applications).
        """
        problem = "" if _is_tf_keras(model) else _first_unmapped(model, self.source)
        if problem:
            from edgetune.zoo import applications

            built, described = applications.rebuild(model, self.source, problem)
            self.applications.append(described)
            # feature_layer may name a layer as the file spells it
            self.renamed.update(applications.name_map(model, built))
            model = built
        if _is_sequential(model):
            x = inputs[0]
            for layer in model.layers:
                x = self.call_layer(layer, (x,), {})
            return [x]
        for old, new in zip(model.inputs, inputs, strict=True):
            self.tensors[id(old)] = new
        return [self.tensor(t) for t in model.outputs]

    def tensor(self, old: Any) -> Any:
        """The rebuilt counterpart of a source tensor, building what it depends on first.

        Iterative, not recursive: an EfficientNet is a few hundred layers deep.
        """
        stack = [old]
        while stack:
            current = stack[-1]
            if id(current) in self.tensors:
                stack.pop()
                continue
            op, node_index, _ = current._keras_history
            node = op._inbound_nodes[node_index]
            args, kwargs = _node_arguments(node)
            pending = [
                t
                for t in _flat((args, kwargs))
                if _is_source_tensor(t) and id(t) not in self.tensors
            ]
            if pending:
                stack.extend(pending)
                continue
            self._rebuild_node(op, node, args, kwargs)
            stack.pop()
        return self.tensors[id(old)]

    def _rebuild_node(self, op: Any, node: Any, args: Any, kwargs: dict[str, Any]) -> None:
        args, kwargs = _map_tensors((args, kwargs), lambda t: self.tensors[id(t)])
        if _is_model(op):
            flat_in = [t for t in _flat((args, kwargs)) if _is_tensor(t)]
            outs = self.call_model(op, flat_in)
        else:
            outs = _flat(self.call_layer(op, args, kwargs))
        for src, new in zip(_node_outputs(node), outs, strict=True):
            self.tensors[id(src)] = new

    def call_layer(self, layer: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if _is_model(layer):
            return self.call_model(layer, list(args))[0]
        if id(layer) not in self.layers:
            self.layers[id(layer)] = (layer, self._clone(layer))
        return self.layers[id(layer)][1](*args, **kwargs)

    def _clone(self, layer: Any) -> Any:
        class_name = type(layer).__name__
        name = layer.name
        if name in self.used or is_automatic_name(name, class_name):
            new_name = f"l{len(self.layers):03d}_{snake_case(class_name)}"
            self.renamed[name] = new_name
            name = new_name
        self.used.add(name)
        if _is_tf_keras(layer):
            config = {**layer.get_config(), "name": name}
            return type(layer).from_config(config)
        made, problem = tf_keras_layer(layer, name)
        if made is None:
            raise EdgetuneError(f"{self.source}: {problem}")
        return made

    def copy_weights(self) -> None:
        """Copies every source weight to the rebuilt layer, by weight role; counts them."""
        for old, new in self.layers.values():
            src = {weight_role(old, w): w for w in old.weights}
            dst = {weight_role(new, w): w for w in new.weights}
            for role, weight in src.items():
                target = dst.pop(role, None)
                where = f"{self.source}: tensor {old.name}/{role} {tuple(weight.shape)}"
                if target is None:
                    raise EdgetuneError(f"{where} has no counterpart in the rebuilt tf_keras layer")
                if tuple(target.shape) != tuple(weight.shape):
                    raise EdgetuneError(f"{where} does not fit the rebuilt {tuple(target.shape)}")
                target.assign(np.asarray(weight_value(weight)))
                self.copied += 1
            if dst:
                raise EdgetuneError(
                    f"{self.source}: layer {old.name}: rebuilt weights {sorted(dst)} got no value"
                )


def tf_keras_layer(layer: Any, name: str) -> tuple[Any, str]:
    """(the tf_keras twin of a Keras 3 layer, "") or (None, why there is none)."""
    import tf_keras

    class_name = type(layer).__name__
    cls = getattr(tf_keras.layers, class_name, None)
    if cls is None:
        return None, f"layer {layer.name!r} ({class_name}) has no tf_keras equivalent"
    try:
        return cls.from_config(
            {**keras3_config_for_tf_keras(layer.get_config(), cls), "name": name}
        ), ""
    except (TypeError, ValueError) as e:  # e.g. Activation("hard_silu"): unknown to tf_keras
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return None, f"layer {layer.name!r} ({class_name}) does not map onto tf_keras ({first})"


def _first_unmapped(model: Any, source: str) -> str:
    """Why the first of a Keras 3 model's own layers has no tf_keras twin; "" when all do."""
    for layer in model.layers:
        if _is_model(layer) or _is_tf_keras(layer):
            continue
        made, problem = tf_keras_layer(layer, layer.name)
        if made is None:
            return problem
    return ""


def keras3_config_for_tf_keras(config: dict[str, Any], cls: type) -> dict[str, Any]:
    """A Keras 3 layer config in the form tf_keras' `from_config` reads."""
    accepted = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable", "dtype"}
    out = {}
    for key, value in config.items():
        if key not in accepted or key.endswith(_DROPPED_SUFFIXES):
            continue
        if key == "dtype" and isinstance(value, dict):
            value = value.get("config", {}).get("name", "float32")
        elif key.endswith("_regularizer") and isinstance(value, dict):
            value = {"class_name": value["class_name"], "config": value.get("config", {})}
        out[key] = value
    if "batch_input_shape" in accepted and "batch_shape" in config:
        out["batch_input_shape"] = config["batch_shape"]
    return out


def weight_role(layer: Any, weight: Any) -> str:
    """The weight's role in its layer (`kernel`, `moving_mean`), in tf_keras' vocabulary."""
    name = weight.name.split(":")[0].split("/")[-1]
    return ROLE_ALIASES.get((type(layer).__name__, name), name) if not _is_tf_keras(layer) else name


def weight_value(weight: Any) -> Any:
    """A weight's array, from a tf_keras or a Keras 3 variable."""
    return weight.numpy() if hasattr(weight, "numpy") else weight.value


def _is_tf_keras(obj: Any) -> bool:
    return type(obj).__module__.startswith("tf_keras")


def _is_model(obj: Any) -> bool:
    return hasattr(obj, "layers") and hasattr(obj, "inputs")


def _is_sequential(model: Any) -> bool:
    return type(model).__name__ == "Sequential"


def _is_tensor(obj: Any) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, np.ndarray)


def _node_arguments(node: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if hasattr(node, "arguments"):  # Keras 3
        return tuple(node.arguments.args), dict(node.arguments.kwargs)
    return tuple(node.call_args), dict(node.call_kwargs)


def _node_outputs(node: Any) -> list[Any]:
    return _flat(node.outputs)


def _flat(structure: Any) -> list[Any]:
    import tensorflow as tf

    return tf.nest.flatten(structure, expand_composites=False)


def _map_tensors(structure: Any, fn: Any) -> Any:
    import tensorflow as tf

    return tf.nest.map_structure(lambda x: fn(x) if _is_source_tensor(x) else x, structure)


def _is_source_tensor(obj: Any) -> bool:
    return hasattr(obj, "_keras_history")
