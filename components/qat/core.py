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
    """Quantization-aware training: a short retraining with fake-quantized weights and activations.

    By default with the prune-preserving scheme (PQAT).
    """

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


# Not in tfmot's registry, but folded into the convolution before them by its transforms.
FOLDED_BY_TFMOT = ("BatchNormalization",)


def quantize_model(model: Any, preserve_sparsity: bool = True, *, partial: bool = False) -> Any:
    """Wraps the model's layers with fake-quantization (8-bit), folding BatchNorm.

    Args:
        model: a flat tf_keras model without pruning wrappers (strip them first).
        preserve_sparsity: the prune-preserving scheme (PQAT).
        partial: annotate only the layers tfmot has a quantize config for; the others
            (custom layers, Lambda, TF ops, Rescaling, ...) stay float in the QAT model and
            the converter calibrates them on the representative data.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    scheme = (
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        if preserve_sparsity
        else tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    )
    if not partial:
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)
    left_float = set(unsupported_layers(model))

    def annotate(layer: Any) -> Any:
        if _describe(layer) in left_float or type(layer).__name__ == "InputLayer":
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    # The clone reuses each layer object (and so its weights), as tfmot's own
    # quantize_annotate_model does.
    annotated = keras.models.clone_model(model, clone_function=annotate)
    return tfmot.quantization.keras.quantize_apply(annotated, scheme)


def unsupported_layers(model: Any) -> list[str]:
    """The layers tfmot's 8-bit scheme has no quantize config for, as "name (Class)"."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )

    supported = registry.Default8BitQuantizeRegistry().supports
    return [
        _describe(layer)
        for layer in model.layers
        if type(layer).__name__ not in ("InputLayer", *FOLDED_BY_TFMOT) and not supported(layer)
    ]


def _describe(layer: Any) -> str:
    return f"{layer.name} ({type(layer).__name__})"


def quantize_with_fallbacks(model: Any, config: QatConfig, probe: Any) -> tuple[Any, str]:
    """(QAT model, how): every layer annotated, else the supported ones only.

    Raises:
        Exception: tfmot's own error when neither rewrite builds and runs on `probe`.
    """
    try:
        qat = quantize_model(model, config.preserve_sparsity)
        qat(probe, training=False)
        return qat, "qat"
    except Exception:  # tfmot raises ValueError, TypeError, KeyError, RuntimeError...
        if not unsupported_layers(model):
            raise
    qat = quantize_model(model, config.preserve_sparsity, partial=True)
    qat(probe, training=False)  # a rewrite that builds but cannot run fails here
    return qat, "qat-partial"


def quantize_aware_train(
    model: Any,
    data_dir: str | os.PathLike,
    config: QatConfig,
    *,
    on_epoch: training.EpochHook | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tunes `model` with fake-quantization so its int8 conversion loses little.

    When tfmot cannot rewrite the model (layers it has no quantize config for in places
    its rewrite cannot handle), QAT is skipped: the pruned float model is returned as it
    is, convert quantizes it after training (full-integer, calibrated), and the report
    says so (`mode` "ptq-fallback", `fallback_reason`).

    Returns:
        The QAT model (or the input model on the fallback) and a report with the mode,
        the layers left float, the sparsity before and after, their ratio, and the
        validation accuracy.
    """
    training.set_seed(config.seed)
    train, _ = training.split_dataset(
        data_dir, "train", config.batch_size, shuffle=True, seed=config.seed
    )
    x_val, y_val = training.load_split(data_dir, "val")
    before = sparsity(model)
    training.train_all_but_batchnorm(model)
    float_layers = unsupported_layers(model)
    try:
        qat, mode = quantize_with_fallbacks(model, config, x_val[:1])
    except Exception as e:  # whatever tfmot raised: QAT is skipped, the reason kept
        return model, fallback_report(model, config, e, float_layers, before, x_val, y_val)
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
        "mode": mode,
        "float_layers": float_layers,
        "sparsity_before": before,
        "sparsity": after,
        "sparsity_kept": after / before if before else 1.0,
        "val_accuracy": training.accuracy(qat, x_val, y_val),
        "history": training.history_of(history) if history else {},
    }
    return qat, report


def fallback_report(
    model: Any,
    config: QatConfig,
    error: BaseException,
    float_layers: list[str],
    before: float,
    x_val: Any,
    y_val: Any,
) -> dict[str, Any]:
    """The report of a skipped QAT: why, and the unchanged model's figures."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return {
        "config": config.model_dump(),
        "mode": "ptq-fallback",
        "fallback_reason": f"tfmot QAT cannot rewrite the model: {type(error).__name__}: {first_line}",
        "float_layers": float_layers,
        "sparsity_before": before,
        "sparsity": before,
        "sparsity_kept": 1.0,
        "val_accuracy": training.accuracy(model, x_val, y_val),
        "history": {},
    }


def load_qat_model(path: str | os.PathLike) -> Any:
    """Loads a QAT model saved as H5 (its quantize wrappers need tfmot's scope)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    with tfmot.quantization.keras.quantize_scope():
        return keras.models.load_model(path, compile=False)
