"""Running .tflite files in LiteRT: float and int8 files score like the Keras model they came from."""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np
import pytest

from edgetune.components.common import litert

support = sys.modules["edgetune_tests_model_support"]  # loaded by conftest.py


@functools.cache
def converted_pair() -> tuple[object, bytes, bytes]:
    """A small trained Keras classifier and its float32 and int8 (int8 I/O) .tflite bytes."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((support.SIZE, support.SIZE, 1)),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x, _ = support.bar_images(32, seed=5)
    x = x.astype(np.float32) / 255.0
    float_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8_bytes = converter.convert()
    return model, float_bytes, int8_bytes


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    model, float_bytes, int8_bytes = converted_pair()
    root = tmp_path_factory.mktemp("litert")
    (root / "float.tflite").write_bytes(float_bytes)
    (root / "int8.tflite").write_bytes(int8_bytes)
    return model, str(root / "float.tflite"), str(root / "int8.tflite")


def inputs(n: int = 12) -> np.ndarray:
    x, _ = support.bar_images(n, seed=6)
    return x.astype(np.float32) / 255.0


def test_float_file_scores_like_keras(pair):
    model, float_path, _ = pair
    x = inputs()

    scores = litert.predict(litert.load(float_path), x)

    np.testing.assert_allclose(scores, model.predict(x, verbose=0), atol=1e-5)


def test_int8_file_is_fed_quantized_input_and_gives_dequantized_scores(pair):
    model, _, int8_path = pair
    interpreter = litert.load(int8_path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    x = inputs()

    scores = litert.predict(interpreter, x)

    assert scores.dtype == np.float32 and scores.shape == (12, 3)
    # Within a few output quantization steps of the float model, as int8 should be.
    step = interpreter.get_output_details()[0]["quantization"][0]
    np.testing.assert_allclose(scores, model.predict(x, verbose=0), atol=4 * step + 0.02)


def test_run_one_takes_an_image_with_or_without_the_batch_axis(pair):
    _, float_path, _ = pair
    interpreter = litert.load(float_path)
    x = inputs(1)

    np.testing.assert_array_equal(litert.run_one(interpreter, x[0]), litert.run_one(interpreter, x))


def test_predict_of_nothing_is_empty_and_latency_is_a_positive_median(pair):
    _, float_path, _ = pair
    interpreter = litert.load(float_path)

    assert litert.predict(interpreter, inputs(0)).shape == (0,)
    assert 0 < litert.median_latency_ms(interpreter, inputs(1), runs=5, warmup=1) < 1000
