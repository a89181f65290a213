"""qat: quantization-aware training that keeps the pruned zeros (tfmot's PQAT scheme).

Plain QAT retrains every weight and destroys the sparsity prune created; the
prune-preserving scheme masks the zeros so they stay zero through QAT and into int8.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from edgetune.components.common import training
from edgetune.components.prune.core import sparsity
from edgetune.errors import EdgetuneError


@dataclass(frozen=True)
class QatConfig:
    """Attributes:
    epochs: QAT epochs (a short retraining with fake-quantized weights and activations).
    learning_rate: Adam learning rate, small: the model is already trained.
    batch_size: examples per step.
    preserve_sparsity: use the prune-preserving scheme (PQAT); False is plain QAT.
    seed: seeds shuffling.
    """

    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 32
    preserve_sparsity: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise EdgetuneError(f"qat epochs={self.epochs}; must be >= 0")
        if self.batch_size < 1:
            raise EdgetuneError(f"qat batch_size={self.batch_size}; must be >= 1")
        if not 0.0 < self.learning_rate < 1.0:
            raise EdgetuneError(f"qat learning_rate={self.learning_rate}; accepted: (0, 1)")


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
    x_train, y_train = training.load_split(data_dir, "train")
    x_val, y_val = training.load_split(data_dir, "val")
    before = sparsity(model)
    training.train_all_but_batchnorm(model)
    qat = quantize_model(model, config.preserve_sparsity)
    training.compile_classifier(qat, config.learning_rate)
    history = None
    if config.epochs:
        history = qat.fit(
            training.dataset(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed),
            validation_data=training.dataset(x_val, y_val, config.batch_size, shuffle=False),
            epochs=config.epochs,
            callbacks=training.epoch_callback("qat", on_epoch),
            verbose=2,
        )
    after = sparsity(qat)
    report = {
        "config": asdict(config),
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
