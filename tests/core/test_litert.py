"""Running .tflite files in LiteRT: float and int8 files score like the Keras model they came from."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune import litert


@pytest.fixture(scope="module")
def pair(small, convert_run):
    """(float Keras model, its float32 .tflite, QAT Keras model, its int8-in/int8-out .tflite)."""
    float_file, int8_file = str(convert_run.float_file), str(convert_run.int8_file)
    return small.float.model, float_file, small.pqat.model, int8_file


def inputs(n: int = 12) -> np.ndarray:
    x, _ = support.bar_images(n, seed=6)
    return x.astype(np.float32) / 255.0


pytestmark = pytest.mark.slow  # the files come from the small chain: trained, pruned, QAT'd


def test_float_file_scores_like_keras(pair):
    model, float_path, _, _ = pair
    x = inputs()

    scores = litert.predict(litert.load(float_path), x)

    np.testing.assert_allclose(scores, model.predict(x, verbose=0), atol=1e-5)


def test_int8_file_is_fed_quantized_input_and_gives_dequantized_scores(pair):
    _, _, model, int8_path = pair
    interpreter = litert.load(int8_path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    x = inputs()

    scores = litert.predict(interpreter, x)

    assert scores.dtype == np.float32 and scores.shape == (12, 3)
    # Within a few output quantization steps of the fake-quantized Keras model it came from.
    step = interpreter.get_output_details()[0]["quantization"][0]
    np.testing.assert_allclose(scores, model.predict(x, verbose=0), atol=4 * step + 0.02)


def test_run_one_takes_an_image_with_or_without_the_batch_axis(pair):
    _, float_path, _, _ = pair
    interpreter = litert.load(float_path)
    x = inputs(1)

    np.testing.assert_array_equal(litert.run_one(interpreter, x[0]), litert.run_one(interpreter, x))


def test_predict_of_nothing_is_empty_and_latency_is_a_positive_median(pair):
    _, float_path, _, _ = pair
    interpreter = litert.load(float_path)

    assert litert.predict(interpreter, inputs(0)).shape == (0,)
    assert 0 < litert.median_latency_ms(interpreter, inputs(1), runs=5, warmup=1) < 1000
