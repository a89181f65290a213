"""Backbone builders for the model zoo (their costs: zoo.costs).

A builder returns a tf_keras Functional model from the image input to a feature vector;
fine_tune adds the classification head to the same graph, so the result stays flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# (kind, filters, stride). Regular 3x3 convolutions in the three downsampling stages, then
# depthwise-separable blocks at 4x4 - the "fused" early stages of MobileNetV4/EfficientNetV2.
# A depthwise layer holds 9 weights per channel but, at int8, every channel also carries a
# float scale, an int64 zero point and an int32 bias (28 bytes): on a small network, early
# depthwise layers made the int8 file 0.33x the float one; this layout gets 0.29x.
DIGITNET_STAGES: tuple[tuple[str, int, int], ...] = (
    ("conv", 32, 2),
    ("conv", 64, 2),
    ("conv", 128, 2),
    ("separable", 256, 1),
    ("separable", 512, 1),
)
# Keras' own default BatchNorm momentum (0.99, MobileNetV2: 0.999) lags badly when a small
# corpus is trained for a few epochs: the moving statistics never catch up and the model
# scores near chance in inference mode. 0.9 tracks within an epoch.
BN_MOMENTUM = 0.9


def digitnet(input_shape: Sequence[int], width: float = 1.0) -> Any:
    """The embedded backbone: a small MobileNet-style network for grey digit-like images.

    Args:
        input_shape: (height, width, channels) of the model input.
        width: multiplier on every layer's filter count.

    Returns:
        A tf_keras Functional model named "digitnet" whose output is the pooled feature
        vector (layer "features"). Layer names are short on purpose: they are repeated in
        every tensor name of the .tflite files.
    """
    from tf_keras import Input, Model, layers

    def conv_bn_relu(x, layer):
        x = layer(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{layer.name}_bn")(x)
        return layers.ReLU(6.0, name=f"{layer.name}_relu")(x)

    def filters(n: int) -> int:
        return max(8, int(round(n * width)))

    x = image = Input(tuple(input_shape), name="image")
    for i, (kind, n, stride) in enumerate(DIGITNET_STAGES):
        if kind == "conv":
            x = conv_bn_relu(
                x,
                layers.Conv2D(
                    filters(n), 3, strides=stride, padding="same", use_bias=False, name=f"c{i}"
                ),
            )
        else:
            x = conv_bn_relu(
                x,
                layers.DepthwiseConv2D(
                    3, strides=stride, padding="same", use_bias=False, name=f"s{i}_dw"
                ),
            )
            x = conv_bn_relu(x, layers.Conv2D(filters(n), 1, use_bias=False, name=f"s{i}_pw"))
    features = layers.GlobalAveragePooling2D(name="features")(x)
    return Model(image, features, name="digitnet")


def keras_application(
    name: str, input_shape: Sequence[int], weights: str | None, **kwargs: Any
) -> Any:
    """A Keras ImageNet backbone without its top, pooled to a feature vector.

    `weights="imagenet"` makes Keras download the weights on first use and cache them in
    ~/.keras/models; select_model only offers such a model when the file is cached or
    downloads are allowed.
    """
    from tf_keras import applications

    constructor = getattr(applications, name)
    return constructor(
        input_shape=tuple(input_shape), include_top=False, weights=weights, pooling="avg", **kwargs
    )
