"""convert: the float32 .tflite baseline and the full-integer int8 .tflite, each checked in LiteRT."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from edgetune import files, litert
from edgetune.components.convert.arena import device_fit
from edgetune.components.convert.outputs import ConvertReport
from edgetune.errors import EdgetuneError
from edgetune.step_config import StepConfig


class ConvertConfig(StepConfig):
    """How convert calibrates the int8 file."""

    step: ClassVar[str] = "convert"

    representative_samples: int = Field(
        200, ge=1, description="training images that calibrate int8 ranges"
    )
    seed: int = Field(0, ge=0, description="seeds which images calibrate")


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TfliteCheck:
    """What LiteRT reports about a converted file."""

    path: str
    size_bytes: int
    gzip_bytes: int
    input_dtype: str
    output_dtype: str
    input_shape: tuple[int, ...]
    input_quantization: tuple[float, int]
    output_quantization: tuple[float, int]

    def to_dict(self) -> dict[str, Any]:
        """The check as a JSON-ready dict (the input shape as a list)."""
        return {**self.__dict__, "input_shape": list(self.input_shape)}


def to_float_tflite(model: Any) -> bytes:
    """A float32 .tflite with no optimization: the plain path of the seed document."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def to_int8_tflite(model: Any, representative: np.ndarray) -> bytes:
    """A full-integer .tflite: int8 weights, activations, input and output.

    Args:
        model: a QAT model (its fake-quant ranges are used) or a float model (ranges are
            calibrated on `representative`).
        representative: model-ready float inputs from the training split.
    """
    import tensorflow as tf

    if len(representative) == 0:
        raise EdgetuneError("convert needs at least one representative training example")

    def samples():
        for x in representative:
            yield [x[None].astype(np.float32)]

    def converter(ops: list[Any]) -> Any:
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = samples
        c.target_spec.supported_ops = ops
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
        return c

    try:
        return converter([tf.lite.OpsSet.TFLITE_BUILTINS_INT8]).convert()
    except Exception as e:  # ConverterError: an op has no int8 kernel
        # Written anyway, with float kernels where int8 ones are missing, so the gate can
        # judge (and refuse) the file with a reason instead of the run dying here.
        log.warning("full-integer int8 conversion failed (%s); converting with float ops", e)
        return converter(
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        ).convert()


def check_tflite(path: str | os.PathLike, sample: np.ndarray) -> TfliteCheck:
    """Loads the file in LiteRT, runs one sample and reports its tensors.

    Raises:
        EdgetuneError: LiteRT cannot load or run the file, or its output is not finite.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        interpreter = litert.load(str(path))
        scores = litert.run_one(interpreter, sample)
    except (RuntimeError, ValueError) as e:
        raise EdgetuneError(f"{path.name}: LiteRT cannot run it ({e})") from None
    if not np.all(np.isfinite(scores)):
        raise EdgetuneError(f"{path.name}: LiteRT output is not finite")
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    return TfliteCheck(
        path=path.name,
        size_bytes=len(data),
        gzip_bytes=files.gzip_size(data),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_shape=tuple(int(d) for d in inp["shape"]),
        input_quantization=(float(inp["quantization"][0]), int(inp["quantization"][1])),
        output_quantization=(float(out["quantization"][0]), int(out["quantization"][1])),
    )


def convert(
    float_model: Any,
    qat_model: Any,
    representative: np.ndarray,
    float_out: str | os.PathLike,
    int8_out: str | os.PathLike,
) -> dict[str, Any]:
    """Writes both .tflite files (atomically), checks each in LiteRT, and reports sizes.

    Returns:
        {"tflite_float": TfliteCheck dict, "tflite_int8": ..., "int8_to_float": size ratio,
        "int8_gzip_to_float": gzipped int8 over the float file}.

    The int8 entry also says whether the file is full-integer (and why not) and its
    tensor arena (tflite-micro where it runs, else planned from LiteRT's view): the gate
    judges both against the device.

    Raises:
        EdgetuneError: a file does not load in LiteRT.
    """
    files.write_bytes(int8_out, to_int8_tflite(qat_model, representative))
    return convert_float_beside(float_model, representative[:1], float_out, int8_out)


def convert_float_beside(
    float_model: Any,
    sample: np.ndarray,
    float_out: str | os.PathLike,
    int8_out: str | os.PathLike,
    int8_fit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes the float32 baseline and checks it and the int8 file already at `int8_out`.

    Args:
        float_model: the float Keras model.
        sample: one model-ready input both files run in LiteRT.
        float_out: where the float32 .tflite goes.
        int8_out: the int8 .tflite, already written.
        int8_fit: its full-integer problem and arena as an earlier step measured them
            (`arena.device_fit`); reused when they are of the same bytes.

    Returns:
        What `convert` returns.
    """
    files.write_bytes(float_out, to_float_tflite(float_model))
    float_check = check_tflite(float_out, sample)
    int8_check = check_tflite(int8_out, sample)
    fit = device_fit(int8_out, int8_fit)
    return {
        "tflite_float": float_check.to_dict(),
        "tflite_int8": {
            **int8_check.to_dict(),
            "full_integer": not fit["full_integer_problem"],
            **fit,
        },
        "int8_to_float": int8_check.size_bytes / float_check.size_bytes,
        "int8_gzip_to_float": int8_check.gzip_bytes / float_check.size_bytes,
    }


def representative_set(x_train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to `n` training inputs, drawn with `seed`, to calibrate the int8 ranges."""
    return x_train[np.random.default_rng(seed).permutation(len(x_train))[:n]]


def convert_artifacts(
    data_dir: str | os.PathLike,
    float_dir: str | os.PathLike,
    int8_dir: str | os.PathLike,
    float_out_dir: str | os.PathLike,
    int8_out_dir: str | os.PathLike,
    config: ConvertConfig,
) -> ConvertReport:
    """The float baseline of fine_tune's model, beside the int8 file the search chose.

    Args:
        data_dir: preprocess's output; a training image checks both files in LiteRT.
        float_dir: fine_tune's model folder.
        int8_dir: the search's chosen folder (its model.tflite is what ships).
        float_out_dir: where the float32 model.tflite goes (created).
        int8_out_dir: where the int8 model.tflite goes (created), a copy of the chosen one,
            with the split model (extractor.tflite, head.npz) beside it when the chosen
            folder holds the Keras model the file was converted from.
        config: which training images check the files and calibrate the split's extractor
            (`representative_samples`, drawn with `seed`).

    Returns:
        The report, typed: `ConvertReport`.
    """
    from edgetune.components.common import training
    from edgetune.components.convert.split import write_split
    from edgetune.components.qat.core import load_qat_model

    x_train, _ = training.load_split(data_dir, "train")
    int8_out = files.artifact_dir(int8_out_dir) / files.TFLITE_MODEL
    files.write_bytes(int8_out, (Path(int8_dir) / files.TFLITE_MODEL).read_bytes())
    representative = representative_set(x_train, config.representative_samples, config.seed)
    report = convert_float_beside(
        training.load_model_artifact(float_dir), representative[:1],
        files.artifact_dir(float_out_dir) / files.TFLITE_MODEL, int8_out, _branch_fit(int8_dir),
    )  # fmt: skip
    keras_file = Path(int8_dir) / files.KERAS_MODEL
    if keras_file.is_file():
        # The split model (extractor + head) beside the int8 file, cut from the same model
        # (QAT or not) the chosen file was converted from: what a device personalizes.
        report["split"] = write_split(load_qat_model(keras_file), representative, int8_out_dir)
    return ConvertReport(report)


def _branch_fit(int8_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What the search branch measured of the chosen file (candidate.json beside it), if any.

    In `arena.device_fit`'s terms; None without a record, or one that lacks a figure.
    """
    path = Path(int8_dir) / files.CANDIDATE
    measured = (files.read_json(path).get("measured") or {}) if path.is_file() else {}
    keys = {"sha256": "sha256", "full_integer_problem": "int8_problem",
            "arena_bytes": "arena_bytes", "arena_source": "arena_source"}  # fmt: skip
    if not all(k in measured for k in keys.values()):
        return None
    return {ours: measured[theirs] for ours, theirs in keys.items()}
