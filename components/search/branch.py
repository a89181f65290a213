"""One candidate of the search, end to end: its student, pruned, quantized, written as .tflite.

The same steps as the fixed recipe (prune's and qat's cores, convert's int8 converter), in
the order a candidate names: the fine-tuned model or a student distilled from it, magnitude
pruning to the candidate's sparsity (skipped at 0), then post-training int8, quantization-
aware training (prune-preserving when pruned) and int8, or float16 weights.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetune import files
from edgetune.components.search.core import TEACHER, CandidateSpec
from edgetune.components.search.distill import (
    DistillSettings,
    build_student,
    check_student_fits,
    distill,
)
from edgetune.components.search.records import CandidateRecord
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError


def to_float16_tflite(model: Any) -> bytes:
    """float16 weights (dequantized to float32 at load), float32 compute and I/O."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def to_int16x8_tflite(model: Any, representative: np.ndarray) -> bytes:
    """16x8: int16 activations and I/O, int8 weights (TFLite's experimental 16x8 ops set).

    Raises:
        EdgetuneError: the converter has no 16x8 kernel for an op of the model.
    """
    import tensorflow as tf

    def samples():
        for x in representative:
            yield [x[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    converter.target_spec.supported_ops = [ops]
    converter.inference_input_type = converter.inference_output_type = tf.int16
    try:
        return converter.convert()
    except Exception as e:  # ConverterError: an op without a 16x8 kernel
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise EdgetuneError(f"int16x8 conversion failed: {type(e).__name__}: {first}") from None


def student_model(
    spec: CandidateSpec,
    teacher: Any,
    logits: np.ndarray | None,
    data_dir: str | os.PathLike,
    device: DeviceProfile,
    settings: DistillSettings,
) -> Any:
    """The candidate's float model: the teacher itself, or a student distilled from `logits`."""
    import tf_keras as keras

    from edgetune.components.common import training

    if spec.student == TEACHER:
        copy = keras.models.clone_model(teacher)  # no branch trains another's weights
        copy.set_weights(teacher.get_weights())
        return copy
    if logits is None:
        raise EdgetuneError(f"search student {spec.student!r} needs the teacher's logits")
    x, y = training.load_split(data_dir, "train")
    keras.utils.set_random_seed(settings.seed)  # its initial weights too: a rerun is the same
    student = build_student(spec.student, x.shape[1:], logits.shape[1])
    check_student_fits(spec.student, student, device)
    distill(student, logits, x, y, settings)
    return student


def compress(
    spec: CandidateSpec,
    model: Any,
    data_dir: str | os.PathLike,
    representative: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    prune_config: Any,
    qat_config: Any,
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Prunes and quantizes `model` as `spec` says; writes `out_dir/model.tflite` atomically.

    Args:
        spec: the candidate.
        model: its float model (`student_model`); trained further in place.
        data_dir: preprocess's output folder.
        representative: training inputs that calibrate the int8 ranges.
        out_dir: where model.tflite goes.
        prune_config: a PruneConfig (its target_sparsity is replaced by the candidate's).
        qat_config: a QatConfig (prune-preserving only when the candidate is pruned).

    Returns:
        The file, and the Keras stages on the way scored on the test split: `pruned`
        (accuracy, sparsity) when pruned, `qat` (accuracy, sparsity, mode) when QAT ran.
    """
    from edgetune.components.common import training
    from edgetune.components.convert.core import to_int8_tflite
    from edgetune.components.prune.core import prune
    from edgetune.components.qat.core import quantize_aware_train

    x_test, y_test = training.load_split(data_dir, "test")
    stages: dict[str, dict[str, Any]] = {}
    if spec.sparsity > 0:
        config = prune_config.model_copy(update={"target_sparsity": spec.sparsity})
        model, report = prune(model, data_dir, config, validate=False)  # scored on test below
        stages["pruned"] = {"accuracy": training.accuracy(model, x_test, y_test),
                            "sparsity": report["sparsity"]}  # fmt: skip
    if spec.quantization == "float16":
        data = to_float16_tflite(model)
    elif spec.quantization == "int16x8":
        data = to_int16x8_tflite(model, representative)
    else:
        if spec.quantization == "qat_int8":
            config = qat_config.model_copy(update={"preserve_sparsity": spec.sparsity > 0})
            model, report = quantize_aware_train(model, data_dir, config)
            keys = ("sparsity", "sparsity_kept", "mode", "fallback_reason")
            stages["qat"] = {"accuracy": training.accuracy(model, x_test, y_test),
                             **{k: report[k] for k in keys if k in report}}  # fmt: skip
        data = to_int8_tflite(model, representative)
    # The model the file was converted from, beside it: convert cuts the split model
    # (extractor + head, for on-device personalization) from the chosen one.
    training.save_model(model, Path(out_dir) / files.KERAS_MODEL)
    return files.write_bytes(Path(out_dir) / files.TFLITE_MODEL, data), stages


@dataclass(frozen=True)
class BranchConfigs:
    """How every branch trains and compresses: the steps' own configs and distillation."""

    prune: Any  # PruneConfig
    qat: Any  # QatConfig
    convert: Any  # ConvertConfig (calibration draw)
    distill: DistillSettings


def run_candidate(
    spec: CandidateSpec,
    data_dir: str | os.PathLike,
    teacher_dir: str | os.PathLike,
    logits: np.ndarray | None,
    device: DeviceProfile,
    configs: BranchConfigs,
    out_dir: str | os.PathLike,
) -> CandidateRecord:
    """One branch: its float model, compressed, written to `out_dir`, measured on that file.

    A student that cannot fit the device makes no file: the record says why, and the search
    goes on with the other candidates.
    """
    from edgetune.components.common import training
    from edgetune.components.convert.core import representative_set
    from edgetune.components.search.measure import interleaved_latency_ms, measure

    start = time.perf_counter()
    teacher = training.load_model_artifact(teacher_dir)
    x_test, y_test = training.load_split(data_dir, "test")
    x_train, _ = training.load_split(data_dir, "train")
    teacher_accuracy = training.accuracy(teacher, x_test, y_test)
    record = functools.partial(CandidateRecord, spec.to_dict(), teacher_accuracy=teacher_accuracy)
    representative = representative_set(x_train, configs.convert.representative_samples,
                                        configs.convert.seed)  # fmt: skip
    try:  # a student too large, a quantization the converter cannot do: no file, a reason
        model = student_model(spec, teacher, logits, data_dir, device, configs.distill)
        path, stages = compress(spec, model, data_dir, representative, out_dir,
                                prune_config=configs.prune, qat_config=configs.qat)  # fmt: skip
    except EdgetuneError as e:
        return record({}, {}, seconds=time.perf_counter() - start, problem=str(e))
    latency = interleaved_latency_ms([path], x_test[:1])[0]
    figures = measure(path, x_test, y_test, device, latency).to_dict()
    return record(figures, stages, seconds=time.perf_counter() - start)
