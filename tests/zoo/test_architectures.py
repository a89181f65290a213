"""Backbone builders and the static costs select_model compares with a device."""

from __future__ import annotations

import pytest

from edgetune.zoo import architectures
from edgetune.zoo.registry import build_backbone, load_zoo


def test_digitnet_costs_match_the_registry_entry():
    entry = load_zoo()["edgetune-digitnet-32"]

    model = architectures.digitnet(entry.input_shape, **entry.arguments)

    assert model.count_params() == entry.params
    assert architectures.count_macs(model) == entry.macs
    assert architectures.peak_activation_bytes(model) == entry.peak_activation_bytes


def test_count_macs_and_peak_activation_of_a_hand_computed_model():
    import tf_keras as keras

    image = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(image)  # 6x6x4 outputs, 3x3x1 taps each: 1,296
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 6x6x4 outputs, 3x3 taps: 1,296
    x = keras.layers.Conv2D(6, 1, groups=2)(x)  # 6x6x6 outputs, 1x1x(4/2) taps: 432
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(3)(x))  # 6x3: 18

    assert architectures.count_macs(model) == 1296 + 1296 + 432 + 18
    # The largest input + output: the grouped 1x1 convolution, 6x6x4 in + 6x6x6 out.
    assert architectures.peak_activation_bytes(model) == 144 + 216
    assert architectures.peak_activation_bytes(model, bytes_per_value=4) == 4 * 360


def test_count_macs_looks_inside_a_nested_model():
    import tf_keras as keras

    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])

    assert architectures.count_macs(outer) == 4 * 5 + 5 * 2


def test_digitnet_width_scales_filters_but_never_below_eight():
    narrow = architectures.digitnet((16, 16, 1), width=0.25)
    full = architectures.digitnet((16, 16, 1))

    assert narrow.get_layer("c0").filters == 8  # 32 x 0.25 = 8
    assert narrow.get_layer("c1").filters == 16
    assert architectures.digitnet((16, 16, 1), width=0.1).get_layer("c0").filters == 8
    assert narrow.output_shape == (None, 128) and full.output_shape == (None, 512)
    assert narrow.get_layer("features") is narrow.layers[-1]
    assert len({layer.name for layer in narrow.layers}) == len(narrow.layers)


@pytest.mark.slow
def test_a_keras_application_entry_costs_match_the_registry():
    entry = load_zoo()["keras-mobilenet-v2-0.35-96"]

    model = build_backbone(entry, pretrained=False)  # no download: random weights

    assert model.output_shape == (None, 1280)
    assert model.count_params() == entry.params
    assert architectures.count_macs(model) == entry.macs
    assert architectures.peak_activation_bytes(model) == entry.peak_activation_bytes
