"""prune: magnitude pruning to a target sparsity with tensorflow-model-optimization.

A pruned model is only smaller once `strip_pruning` has removed the wrappers and the file is
compressed (gzip): the zeros are stored like any other weight.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from edgetune.components.common import training
from edgetune.step_config import StepConfig


class PruneConfig(StepConfig):
    """Magnitude pruning to `target_sparsity`.

    The schedule ramps sparsity up over all epochs but the last, which trains at the final
    sparsity so accuracy can recover.
    """

    step: ClassVar[str] = "prune"

    target_sparsity: float = Field(
        0.5, ge=0, lt=1, description="fraction of each Conv/Dense kernel set to zero"
    )
    epochs: int = Field(3, ge=1, description="pruning epochs (the last at the final sparsity)")
    learning_rate: float = Field(1e-4, gt=0, lt=1, description="Adam learning rate while pruning")
    batch_size: int = Field(32, ge=1, description="examples per training step")
    seed: int = Field(0, ge=0, description="seeds shuffling")


def prunable_kernels(model: Any) -> dict[str, np.ndarray]:
    """The weights magnitude pruning acts on (Conv and Dense kernels), by layer name.

    Works on a plain model and on a QAT model, whose layers are wrapped (the wrapped
    layer keeps its name), so sparsity is measured the same way before and after QAT.
    """
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    kernels = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not prune_registry.PruneRegistry.supports(inner):
            continue
        # Read the variables, not the layer attributes: inside a QAT wrapper the attribute
        # is the fake-quantized symbolic tensor, the variable is the kernel itself.
        for attr in prune_registry.PruneRegistry._weight_names(inner):  # kernel, not bias
            for weight in layer.weights:
                if weight.name.endswith(f"/{attr}:0"):
                    kernels[inner.name] = weight.numpy()
    return kernels


def sparsity(model: Any) -> float:
    """Fraction of zeros over all prunable kernels."""
    kernels = prunable_kernels(model).values()
    total = sum(k.size for k in kernels)
    return float(sum(int(np.count_nonzero(k == 0)) for k in kernels) / total) if total else 0.0


def prune_supported_layers(model: Any, schedule: Any) -> Any:
    """Wraps every layer tfmot can prune; leaves the others (Rescaling, custom layers) as they are.

    tfmot's whole-model `prune_low_magnitude` refuses a model with any layer it does not
    know, as zoo backbones and users' files have (MobileNetV3's Rescaling).
    """
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    def wrap(layer: Any) -> Any:
        if not (prune_registry.PruneRegistry.supports(layer) and layer.weights):
            return layer
        wrapper = tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        # Keras has AutoGraph rewrite a non-Keras layer's call, and with it every tfmot
        # function it calls, at each trace: about 1 s of fit's first step. The wrapper is
        # graph code already (tf.cond through smart_cond); the graph, and so the trained
        # weights, are the same without it.
        wrapper.call = tf.autograph.experimental.do_not_convert(wrapper.call)
        return wrapper

    # The clone reuses the layer objects it is handed back, and so their weights.
    return keras.models.clone_model(model, clone_function=wrap)


def prune(
    model: Any,
    data_dir: str | os.PathLike,
    config: PruneConfig,
    *,
    on_epoch: training.EpochHook | None = None,
    validate: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Prunes `model` by magnitude to `config.target_sparsity` while retraining it.

    Precondition: `model` is a flat Functional or Sequential tf_keras model (no nested
    models), as fine_tune builds.

    Args:
        model: the model to prune (its layers are reused).
        data_dir: preprocess's output folder.
        config: the target sparsity and the retraining's settings.
        on_epoch: called as (phase, epoch, logs) after every epoch.
        validate: score the validation split after every epoch and at the end; False for
            a caller that scores the model itself (a search branch) and would discard them.
            The training is the same either way.

    Returns:
        The stripped model (plain Keras layers, zeros in the kernels) and a report with
        the measured sparsity of the prunable kernels and (with `validate`) the
        validation accuracy.
    """
    import tensorflow_model_optimization as tfmot

    training.set_seed(config.seed)
    train, n_train = training.split_dataset(
        data_dir, "train", config.batch_size, shuffle=True, seed=config.seed
    )
    x_val, y_val = training.load_split(data_dir, "val")
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    ramp_steps = steps_per_epoch * max(1, config.epochs - 1)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=config.target_sparsity,
        begin_step=0,
        end_step=ramp_steps,
        # The default frequency (100 steps) would skip the whole ramp on a small data set.
        frequency=max(1, min(100, ramp_steps // 10)),
    )
    training.train_all_but_batchnorm(model)
    pruned = prune_supported_layers(model, schedule)
    training.compile_classifier(pruned, config.learning_rate)
    callbacks = [
        tfmot.sparsity.keras.UpdatePruningStep(),
        *training.epoch_callback("prune", on_epoch),
    ]
    val = training.dataset(x_val, y_val, config.batch_size, shuffle=False) if validate else None
    history = pruned.fit(
        train, validation_data=val, epochs=config.epochs, callbacks=callbacks, verbose=2
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    report = {
        "config": config.model_dump(),
        "sparsity": sparsity(stripped),
        "pruned_layers": sorted(prunable_kernels(stripped)),
        "history": training.history_of(history),
    }
    if validate:
        report["val_accuracy"] = training.accuracy(stripped, x_val, y_val)
    return stripped, report
