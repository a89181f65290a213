"""convert: a float32 and a full-integer int8 .tflite, each run in LiteRT, the int8 one smaller."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune import files, litert
from edgetune.components.convert import core
from edgetune.components.convert.core import check_tflite, convert, to_int8_tflite
from edgetune.errors import EdgetuneError


def tensor_types(path) -> tuple[str, str]:
    """Input and output dtypes as LiteRT itself reports them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return np.dtype(inp["dtype"]).name, np.dtype(out["dtype"]).name


@pytest.mark.slow
def test_the_int8_file_has_int8_input_and_output_and_the_float_file_float32(convert_run):
    assert tensor_types(convert_run.int8_file) == ("int8", "int8")
    assert tensor_types(convert_run.float_file) == ("float32", "float32")
    int8 = convert_run.report["tflite_int8"]
    assert (int8["input_dtype"], int8["output_dtype"]) == ("int8", "int8")
    assert int8["input_shape"] == [1, 16, 16, 1]
    # Inputs are 0..1 (pixels / 255): the int8 input spans that range with zero point -128.
    scale, zero_point = int8["input_quantization"]
    assert scale == pytest.approx(1 / 255, rel=0.01) and zero_point == -128


@pytest.mark.slow
def test_the_int8_file_is_smaller_and_the_report_measures_both_files(convert_run):
    float_bytes = convert_run.float_file.read_bytes()
    int8_bytes = convert_run.int8_file.read_bytes()

    assert len(int8_bytes) < 0.5 * len(float_bytes)
    report = convert_run.report
    assert report["tflite_float"]["size_bytes"] == len(float_bytes)
    assert report["tflite_int8"]["size_bytes"] == len(int8_bytes)
    assert report["tflite_int8"]["gzip_bytes"] == files.gzip_size(int8_bytes)
    assert report["int8_to_float"] == pytest.approx(len(int8_bytes) / len(float_bytes))
    assert report["int8_gzip_to_float"] == pytest.approx(
        files.gzip_size(int8_bytes) / len(float_bytes)
    )


@pytest.mark.slow
def test_both_files_classify_like_the_keras_models_they_came_from(convert_run, small):
    x_test, y_test = support.model_ready(small.data_dir, "test")
    as_keras = {
        convert_run.float_file: small.float.model.predict(x_test, verbose=0),
        convert_run.int8_file: small.pqat.model.predict(x_test, verbose=0),
    }

    for path, expected in as_keras.items():
        scores = litert.predict(litert.load(str(path)), x_test)
        agreement = np.mean(np.argmax(scores, -1) == np.argmax(expected, -1))
        assert agreement >= 0.9, path.parent.name
        assert np.mean(np.argmax(scores, -1) == y_test) >= 0.8, path.parent.name


def test_a_file_litert_cannot_load_is_named(tmp_path):
    broken = tmp_path / "model.tflite"
    broken.write_bytes(b"TFL3 but not really a flatbuffer")

    with pytest.raises(EdgetuneError, match="model.tflite: LiteRT cannot run it"):
        check_tflite(broken, np.zeros((1, 16, 16, 1), np.float32))


def test_int8_conversion_without_representative_data_is_refused():
    # Checked before the model is touched (so no model is needed to see it).
    with pytest.raises(EdgetuneError, match="at least one representative training example"):
        to_int8_tflite(None, np.zeros((0, 16, 16, 1), np.float32))


@pytest.mark.slow
def test_an_int8_file_without_int8_input_and_output_is_reported_not_full_integer(
    micro, tmp_path, monkeypatch
):
    from edgetune.components.common import training

    # A converter that quietly kept float I/O (say, a changed default): convert must notice,
    # and say so for the gate to refuse the file (the run goes on to a reasoned verdict).
    monkeypatch.setattr(core, "to_int8_tflite", lambda model, rep: core.to_float_tflite(model))
    model = training.load_model(micro.float_dir / files.KERAS_MODEL)

    report = convert(
        model, model, np.zeros((2, 16, 16, 1), np.float32), tmp_path / "f", tmp_path / "q"
    )

    assert report["tflite_int8"]["full_integer"] is False
    assert "is not int8; the device runs int8 only" in report["tflite_int8"]["full_integer_problem"]


@pytest.mark.slow
def test_the_int8_file_is_full_integer_and_its_tflm_arena_measured(convert_run, small):
    from edgetune.zoo import costs

    int8 = convert_run.report["tflite_int8"]

    assert int8["full_integer"] is True and int8["full_integer_problem"] == ""
    assert int8["arena_source"] == "tflite-micro"
    # the estimate select_model makes before training is near the measured arena
    estimate = costs.model_costs(small.float.model).arena_bytes
    assert 0.75 * int8["arena_bytes"] <= estimate <= 1.25 * int8["arena_bytes"]
