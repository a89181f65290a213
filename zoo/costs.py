"""What a model costs on a device, counted from the model itself: parameters, MACs, RAM.

The RAM figure estimates the TFLite Micro tensor arena of the model's int8 file before any
training: the activations are planned the way TFLM's GreedyMemoryPlanner does it (largest
tensor first, at the lowest offset free for its lifetime), on the graph the converter emits
(BatchNorm folded into the convolution, ReLU fused into it, Dropout gone); to that come the
per-channel quantization data and TFLM's per-tensor and per-op bookkeeping (measured with
the tflite-micro interpreter's allocation recorder on the embedded backbone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Layers the converter folds into a neighbouring op: no tensor, no op of their own (explicit
# zero padding becomes the next convolution's padding).
FOLDED = ("BatchNormalization", "ReLU", "Dropout", "SpatialDropout2D", "ZeroPadding2D")
FUSED_ACTIVATIONS = ("linear", "relu", "relu6")
ALIGNMENT = 16  # TFLM aligns every planned buffer to 16 bytes
# TFLM bookkeeping (tflite-micro RecordingMicroAllocator on the embedded backbone):
EVAL_TENSOR_BYTES = 24  # a TfLiteEvalTensor per tensor, weights included
NODE_BYTES = 64 + 112  # NodeAndRegistration plus the kernel's OpData
PER_CHANNEL_BYTES = 8  # int32 multiplier and shift per output channel
FIXED_BYTES = 704  # input/output TfLiteTensors, their quantization data, the subgraph


@dataclass(frozen=True)
class ModelCosts:
    """Static costs of one inference of a model at int8."""

    params: int
    macs: int
    activation_bytes: int  # the planned activation buffers (TFLM arena head)
    arena_bytes: int  # the whole estimated TFLM arena


def model_costs(model: Any) -> ModelCosts:
    """Counts the costs of a flat (or nested) tf_keras model."""
    head = plan_activations(_ops(model))
    return ModelCosts(
        params=int(model.count_params()),
        macs=count_macs(model),
        activation_bytes=head,
        arena_bytes=head + bookkeeping_bytes(model),
    )


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one inference, for every layer that multiplies.

    Conv (1-3D), DepthwiseConv, SeparableConv (depthwise + pointwise), Conv2DTranspose and
    Dense; elementwise layers are not counted.
    """
    macs = 0
    for layer in _leaf_layers(model):
        kind = type(layer).__name__
        out = layer.output_shape
        if kind in ("SeparableConv1D", "SeparableConv2D"):
            spatial = _volume(out[1:-1])
            depthwise = _volume(layer.depthwise_kernel.shape)
            macs += spatial * depthwise + spatial * _volume(layer.pointwise_kernel.shape)
        elif kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
            macs += _volume(out[1:-1]) * _volume(layer.depthwise_kernel.shape)
        elif kind.startswith("Conv") and kind.endswith("Transpose"):
            macs += _volume(layer.input_shape[1:-1]) * _volume(layer.kernel.shape)
        elif (kind.startswith("Conv") and hasattr(layer, "kernel")) or kind == "Dense":
            # every output position of a Conv or Dense multiplies the whole kernel once
            macs += _volume(out[1:-1]) * _volume(layer.kernel.shape)
    return int(macs)


def peak_activation_bytes(model: Any, bytes_per_value: int = 1) -> int:
    """The largest input-plus-output activation of any layer: a floor for the tensor arena."""
    peak = 0
    for layer in _leaf_layers(model):
        ins = layer.input_shape if isinstance(layer.input_shape, list) else [layer.input_shape]
        outs = layer.output_shape if isinstance(layer.output_shape, list) else [layer.output_shape]
        peak = max(peak, sum(_volume(s[1:]) for s in ins + outs))
    return peak * bytes_per_value


def bookkeeping_bytes(model: Any) -> int:
    """TFLM's persistent allocations: per-channel quantization, tensor and op records."""
    ops = _ops(model)
    multiplying = [
        layer
        for layer in _leaf_layers(model)
        if type(layer).__name__.startswith(("Conv", "DepthwiseConv", "SeparableConv", "Dense"))
    ]
    channels = sum(
        int(layer.output_shape[-1]) for layer in multiplying if type(layer).__name__ != "Dense"
    )
    weight_tensors = 2 * len(multiplying)  # weights and bias (BatchNorm folds into a bias)
    return (
        channels * PER_CHANNEL_BYTES
        + (len(ops) + 1 + weight_tensors) * EVAL_TENSOR_BYTES
        + len(ops) * NODE_BYTES
        + FIXED_BYTES
    )


def plan_activations(ops: list[tuple[int, list[int]]]) -> int:
    """The arena head of a greedy plan of the activations.

    The largest tensor goes first, each at the lowest offset that no tensor alive at the
    same time uses.

    Args:
        ops: per op in execution order, (output bytes, indices of the ops whose outputs it
            reads; -1 is the model input). Op 0 is the input itself.
    """
    n = len(ops)
    last_use = list(range(n))
    for i, (_, inputs) in enumerate(ops):
        for j in inputs:
            last_use[j] = max(last_use[j], i)
    last_use[-1] = n  # the model output stays until it is read
    order = sorted(range(n), key=lambda t: -ops[t][0])
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    top = 0
    for t in order:
        size = _aligned(ops[t][0])
        first, last = t, last_use[t]
        busy = sorted((o, o + s) for o, s, f, la in placed if f <= last and first <= la)
        offset = 0
        for start, end in busy:
            if offset + size <= start:
                break
            offset = max(offset, end)
        placed.append((offset, size, first, last))
        top = max(top, offset + size)
    return top


def _ops(model: Any) -> list[tuple[int, list[int]]]:
    """The converter's ops of a flat model: (output bytes at int8, input op indices)."""
    ops: list[tuple[int, list[int]]] = []
    producer: dict[int, int] = {}  # id(keras tensor) -> op index
    for layer in model.layers:
        kind = type(layer).__name__
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        outputs = layer.output if isinstance(layer.output, list) else [layer.output]
        sources = [producer.get(id(t), 0) for t in inputs]
        if kind == "InputLayer":
            ops.append((_volume(layer.output.shape[1:]), []))
            producer[id(layer.output)] = len(ops) - 1
            continue
        folded = kind in FOLDED or (
            kind == "Activation" and _activation(layer) in FUSED_ACTIVATIONS
        )
        if folded:
            for t in outputs:
                producer[id(t)] = sources[0]
            continue
        ops.append((sum(_volume(t.shape[1:]) for t in outputs), sources))
        if _activation(layer) not in ("", *FUSED_ACTIVATIONS):  # softmax, sigmoid: own op
            ops.append((ops[-1][0], [len(ops) - 1]))
        for t in outputs:
            producer[id(t)] = len(ops) - 1
    return ops


def _activation(layer: Any) -> str:
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", "") if fn is not None else ""


def _aligned(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _volume(shape: Sequence[int | None]) -> int:
    n = 1
    for d in shape:
        n *= int(d or 1)
    return n


def _leaf_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_leaf_layers(layer) if hasattr(layer, "layers") else [layer])
    return out
