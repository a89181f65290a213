"""qat: quantization-aware training that keeps the pruned zeros (tfmot's PQAT scheme).

Plain QAT retrains every weight and destroys the sparsity prune created; the
prune-preserving scheme masks the zeros so they stay zero through QAT and into int8.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import Field

from edgetune.components.common import training
from edgetune.components.prune.core import sparsity
from edgetune.step_config import StepConfig


class QatConfig(StepConfig):
    """Quantization-aware training: a short retraining with fake-quantized weights and
    activations, by default with the prune-preserving scheme (PQAT)."""

    step: ClassVar[str] = "qat"

    epochs: int = Field(2, ge=0, description="quantization-aware training epochs")
    learning_rate: float = Field(
        5e-5, gt=0, lt=1, description="Adam learning rate of QAT (small: the model is trained)"
    )
    batch_size: int = Field(32, ge=1, description="examples per training step")
    preserve_sparsity: bool = Field(
        True, description="prune-preserving QAT (PQAT); false: plain QAT"
    )
    seed: int = Field(0, ge=0, description="seeds shuffling")


def quantize_model(model: Any, preserve_sparsity: bool = True) -> Any:
    """Wraps every supported layer with fake-quantization (8-bit), folding BatchNorm.

    Precondition: a flat tf_keras model without pruning wrappers (strip them first).
    """
    import tensorflow_model_optimization as tfmot

    scheme = (
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        if preserve_sparsity
        else tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    )
    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    return tfmot.quantization.keras.quantize_apply(annotated, scheme)


def quantize_aware_train(
    model: Any,
    data_dir: str | os.PathLike,
    config: QatConfig,
    *,
    on_epoch: training.EpochHook | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tunes `model` with fake-quantization so its int8 conversion loses little.

    Returns:
        The QAT model and a report with the sparsity before and after, their ratio, and
        the validation accuracy.
    """
    training.set_seed(config.seed)
    train, _ = training.split_dataset(
        data_dir, "train", config.batch_size, shuffle=True, seed=config.seed
    )
    x_val, y_val = training.load_split(data_dir, "val")
    before = sparsity(model)
    training.train_all_but_batchnorm(model)
    qat = quantize_model(model, config.preserve_sparsity)
    training.compile_classifier(qat, config.learning_rate)
    history = None
    if config.epochs:
        history = qat.fit(
            train,
            validation_data=training.dataset(x_val, y_val, config.batch_size, shuffle=False),
            epochs=config.epochs,
            callbacks=training.epoch_callback("qat", on_epoch),
            verbose=2,
        )
    after = sparsity(qat)
    report = {
        "config": config.model_dump(),
        "sparsity_before": before,
        "sparsity": after,
        "sparsity_kept": after / before if before else 1.0,
        "val_accuracy": training.accuracy(qat, x_val, y_val),
        "history": training.history_of(history) if history else {},
    }
    return qat, report


def load_qat_model(path: str | os.PathLike) -> Any:
    """Loads a QAT model saved as H5 (its quantize wrappers need tfmot's scope)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    with tfmot.quantization.keras.quantize_scope():
        return keras.models.load_model(path, compile=False)
