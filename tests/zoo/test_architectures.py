"""Backbone builders and the static costs select_model compares with a device."""

from __future__ import annotations

import pytest

from edgetune.zoo import architectures, costs
from edgetune.zoo.registry import build_backbone, load_zoo


def test_digitnet_costs_match_the_registry_entry():
    entry = load_zoo()["edgetune-digitnet-32"]

    model = architectures.digitnet(entry.input_shape, **entry.arguments)

    assert model.count_params() == entry.params
    assert costs.count_macs(model) == entry.macs
    assert costs.peak_activation_bytes(model) == entry.peak_activation_bytes
    assert costs.model_costs(model).arena_bytes == entry.arena_bytes


def test_count_macs_and_peak_activation_of_a_hand_computed_model():
    import tf_keras as keras

    image = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(image)  # 6x6x4 outputs, 3x3x1 taps each: 1,296
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 6x6x4 outputs, 3x3 taps: 1,296
    x = keras.layers.Conv2D(6, 1, groups=2)(x)  # 6x6x6 outputs, 1x1x(4/2) taps: 432
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(3)(x))  # 6x3: 18

    assert costs.count_macs(model) == 1296 + 1296 + 432 + 18
    # The largest input + output: the grouped 1x1 convolution, 6x6x4 in + 6x6x6 out.
    assert costs.peak_activation_bytes(model) == 144 + 216
    assert costs.peak_activation_bytes(model, bytes_per_value=4) == 4 * 360


def test_count_macs_counts_separable_convolutions_depthwise_and_pointwise():
    import tf_keras as keras

    image = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(16, 3, padding="same", depth_multiplier=2)(image)
    model = keras.Model(image, x)

    # depthwise: 8x8 positions x 3x3x3x2 taps; pointwise: 8x8 positions x 6x16
    assert costs.count_macs(model) == 64 * 54 + 64 * 96


def test_the_arena_plan_reuses_the_memory_of_tensors_no_longer_needed():
    # input 1,024 B -> a 8,192 B map -> a 4,096 B map -> 160 B: the largest two are alive
    # together; the input fits where the 4,096 B map goes later (TFLM's greedy plan).
    ops = [(1024, []), (8192, [0]), (4096, [1]), (160, [2])]

    assert costs.plan_activations(ops) == 8192 + 4096


def test_count_macs_looks_inside_a_nested_model():
    import tf_keras as keras

    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])

    assert costs.count_macs(outer) == 4 * 5 + 5 * 2


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
    assert costs.count_macs(model) == entry.macs
    assert costs.peak_activation_bytes(model) == entry.peak_activation_bytes
    assert costs.model_costs(model).arena_bytes == entry.arena_bytes
