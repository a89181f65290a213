"""Keras 3 application models whose layers do not map one to one: rebuilt from tf_keras.applications.

Keras 3's MobileNetV3 uses `Activation("hard_silu")`, which tf_keras has no name for, so the
file cannot be rebuilt layer by layer; MobileNetV2 and EfficientNet map one to one and take
the ordinary path (tests/zoo/test_model_file.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import edgetune  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow
from edgetune.errors import EdgetuneError
from edgetune.zoo import applications
from edgetune.zoo.model_file import load_model_file
from edgetune.zoo.model_source import cut


def test_a_keras3_mobilenetv3_inside_a_classifier_is_rebuilt_from_tf_keras_applications(tmp_path):
    import keras

    base = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.5, include_top=False, pooling="avg", weights=None
    )
    rng = np.random.default_rng(0)  # BatchNorm statistics that are not the identity
    for layer in base.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    image = keras.Input((32, 32, 3))
    model = keras.Model(image, keras.layers.Dense(3, name="classes")(base(image)))
    model.save(tmp_path / "v3.keras")

    loaded = load_model_file(str(tmp_path / "v3.keras"))

    assert loaded.applications and "MobileNetV3Small" in loaded.applications[0]
    assert "alpha=0.5" in loaded.applications[0]
    # every tensor of the file reached the flat model; the logits agree with Keras 3's
    assert loaded.tensors_copied == len(model.weights)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(loaded.model(x, training=False).numpy(), expected, atol=1e-4)
    assert loaded.max_abs_diff < 1e-4
    assert not any(hasattr(layer, "layers") for layer in loaded.model.layers)
    # a feature_layer given as the file spells it finds the rebuilt layer
    backbone, name, _ = cut(loaded, "conv_1_bn")
    assert (
        name == "Conv_1/BatchNorm"
        and backbone.output_shape[-1] == base.get_layer("conv_1_bn").output.shape[-1]
    )


def test_a_tensor_that_does_not_map_is_named_and_nothing_is_copied():
    import keras
    import tf_keras

    src = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(8, 3, name="conv")])
    dst = tf_keras.Sequential(
        [tf_keras.Input((4, 4, 3)), tf_keras.layers.Conv2D(6, 3, name="Conv")]
    )
    before = dst.get_layer("Conv").kernel.numpy().copy()

    problem = applications.copy_by_name(src, dst, "f.keras")

    assert problem == "tensor conv/kernel (3, 3, 3, 8) of f.keras does not fit (3, 3, 3, 6)"
    np.testing.assert_array_equal(dst.get_layer("Conv").kernel.numpy(), before)


def test_an_unmappable_keras3_model_that_is_no_application_is_refused_in_one_line(tmp_path):
    import keras

    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stem")(image)
    x = keras.layers.Activation("hard_silu", name="swish")(x)
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x))
    model.save(tmp_path / "odd.keras")

    with pytest.raises(EdgetuneError) as e:
        load_model_file(str(tmp_path / "odd.keras"))
    message = str(e.value)
    assert "\n" not in message
    assert "odd.keras" in message and "'swish' (Activation)" in message
    assert "not a Keras Applications model" in message
