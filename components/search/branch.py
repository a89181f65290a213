"""One candidate of the search, end to end: its student, pruned, quantized, written as .tflite.

The same steps as the fixed recipe (prune's and qat's cores, convert's int8 converter), in
the order a candidate names: the fine-tuned model or a student distilled from it, magnitude
pruning to the candidate's sparsity (skipped at 0), then post-training int8, quantization-
aware training (prune-preserving when pruned) and int8, or float16 weights.
"""

from __future__ import annotations

import os
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
from edgetune.config import DeviceProfile


def to_float16_tflite(model: Any) -> bytes:
    """float16 weights (dequantized to float32 at load), float32 compute and I/O."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def student_model(
    spec: CandidateSpec,
    teacher: Any,
    logits: np.ndarray,
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
    x, y = training.load_split(data_dir, "train")
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
) -> Path:
    """Prunes and quantizes `model` as `spec` says; writes `out_dir/model.tflite` atomically.

    Args:
        spec: the candidate.
        model: its float model (`student_model`); trained further in place.
        data_dir: preprocess's output folder.
        representative: training inputs that calibrate the int8 ranges.
        out_dir: where model.tflite goes.
        prune_config: a PruneConfig (its target_sparsity is replaced by the candidate's).
        qat_config: a QatConfig (prune-preserving only when the candidate is pruned).
    """
    from edgetune.components.convert.core import to_int8_tflite
    from edgetune.components.prune.core import prune
    from edgetune.components.qat.core import quantize_aware_train

    if spec.sparsity > 0:
        config = prune_config.model_copy(update={"target_sparsity": spec.sparsity})
        model, _ = prune(model, data_dir, config)
    if spec.quantization == "float16":
        data = to_float16_tflite(model)
    else:
        if spec.quantization == "qat_int8":
            config = qat_config.model_copy(update={"preserve_sparsity": spec.sparsity > 0})
            model, _ = quantize_aware_train(model, data_dir, config)
        data = to_int8_tflite(model, representative)
    return files.write_bytes(Path(out_dir) / files.TFLITE_MODEL, data)
