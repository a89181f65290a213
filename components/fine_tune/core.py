"""fine_tune: a new head on a pretrained backbone, trained frozen, then gently unfrozen.

The classifier is one flat Functional graph from the backbone's input to the new head:
QAT cannot quantize a model nested inside another model.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import Field, model_validator

from edgetune.components.common import training
from edgetune.errors import EdgetuneError
from edgetune.step_config import StepConfig
from edgetune.zoo.registry import ZooEntry, build_backbone


class FineTuneConfig(StepConfig):
    """Hyper-parameters of the two phases (the seed recipe: freeze, new head, small LR)."""

    step: ClassVar[str] = "fine_tune"

    head_epochs: int = Field(
        4, ge=0, description="phase 1 epochs: backbone frozen, only the new head learns"
    )
    unfreeze_epochs: int = Field(
        4, ge=0, description="phase 2 epochs: the top backbone layers learn too"
    )
    unfreeze_top_layers: int = Field(
        0, ge=0, description="backbone layers phase 2 opens; 0: the zoo entry's default"
    )
    head_learning_rate: float = Field(1e-3, gt=0, lt=1, description="Adam learning rate of phase 1")
    unfreeze_learning_rate: float = Field(
        3e-4, gt=0, lt=1, description="the smaller Adam learning rate of phase 2"
    )
    batch_size: int = Field(
        32, ge=1, description="examples per training step (fine_tune, prune, qat)"
    )
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the new head")
    patience: int = Field(
        3,
        ge=0,
        description="epochs without a better val loss before a phase stops (best weights kept); 0: never",
    )
    seed: int = Field(
        0,
        ge=0,
        description="seeds weight init, shuffling, dropout, augmentation and calibration samples",
    )

    @model_validator(mode="after")
    def _something_trains(self) -> FineTuneConfig:
        if self.head_epochs + self.unfreeze_epochs == 0:
            raise ValueError("fine_tune head_epochs + unfreeze_epochs = 0; nothing would train")
        return self


def build_classifier(backbone: Any, num_classes: int, dropout: float) -> Any:
    """The backbone's graph extended by dropout and a softmax head: one flat model."""
    import tf_keras as keras

    x = keras.layers.Dropout(dropout, name="head_dropout")(backbone.output)
    head = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(backbone.input, head, name=backbone.name)


def set_backbone_trainable(backbone: Any, top_layers: int, *, freeze_batchnorm: bool = True) -> int:
    """Freezes the backbone but its last `top_layers` layers; returns how many can learn.

    With `freeze_batchnorm`, BatchNormalization layers stay frozen, which in Keras 2 also
    keeps them in inference mode: their moving statistics, learned on the large pretraining
    corpus, are not disturbed by a few small batches of the user's data. A model trained
    from scratch has no such statistics to keep, so its BatchNorm learns.
    """
    import tf_keras as keras

    layers = backbone.layers
    opened = 0
    for i, layer in enumerate(layers):
        is_batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        open_it = i >= len(layers) - top_layers and not (freeze_batchnorm and is_batchnorm)
        layer.trainable = open_it
        opened += int(open_it and bool(layer.weights))
    return opened


def fine_tune(
    entry: ZooEntry,
    data_dir: str | os.PathLike,
    config: FineTuneConfig,
    *,
    pretrained: bool = True,
    on_epoch: training.EpochHook | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Trains a classifier for the data in `data_dir` on the zoo entry's backbone.

    Args:
        entry: the backbone chosen by select_model.
        data_dir: preprocess output (train/val splits and the preprocessing spec).
        config: the two phases' hyper-parameters.
        pretrained: False trains the same architecture from random weights, every layer
            (BatchNorm too) learning for head_epochs + unfreeze_epochs at the head's rate,
            with the same early stopping: the baseline the pretraining must beat.
        on_epoch: called as (phase, epoch, logs) after every epoch.

    Returns:
        The float Keras model and a report (per-phase history, val accuracy, layer counts).
    """
    spec = training.load_spec(data_dir)
    if tuple(entry.input_shape) != (spec.height, spec.width, spec.channels):
        raise EdgetuneError(
            f"data in {data_dir} is {spec.height}x{spec.width}x{spec.channels}, "
            f"but {entry.id} takes {entry.input_shape}; preprocess for the chosen model"
        )
    training.set_seed(config.seed)
    train, _ = training.split_dataset(
        data_dir, "train", config.batch_size, shuffle=True, seed=config.seed
    )
    x_val, y_val = training.load_split(data_dir, "val")
    val = training.dataset(x_val, y_val, config.batch_size, shuffle=False)

    backbone = build_backbone(entry, pretrained=pretrained)
    model = build_classifier(backbone, len(spec.labels), config.dropout)
    top_layers = config.unfreeze_top_layers or entry.unfreeze_top_layers
    phases = [
        (
            "head",
            config.head_epochs,
            config.head_learning_rate,
            0 if pretrained else len(backbone.layers),
        ),
        ("unfreeze", config.unfreeze_epochs, config.unfreeze_learning_rate, top_layers),
    ]
    if not pretrained:  # the baseline trains every layer, BatchNorm too, at the head's rate
        phases = [
            (
                "scratch",
                config.head_epochs + config.unfreeze_epochs,
                config.head_learning_rate,
                len(backbone.layers),
            )
        ]
    report: dict[str, Any] = {
        "zoo_id": entry.id,
        "pretrained": pretrained,
        "config": config.model_dump(),
        "phases": {},
    }
    for phase, epochs, learning_rate, opened in phases:
        if epochs == 0:
            continue
        trainable = set_backbone_trainable(backbone, opened, freeze_batchnorm=pretrained)
        training.compile_classifier(model, learning_rate)
        callbacks = training.epoch_callback(phase, on_epoch) + training.early_stopping(
            config.patience
        )
        history = model.fit(
            train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=2
        )
        report["phases"][phase] = {
            "epochs_run": len(history.history["loss"]),
            "learning_rate": learning_rate,
            "trainable_backbone_layers": trainable,
            "history": training.history_of(history),
        }
    training.train_all_but_batchnorm(model)  # as prune and qat will train it
    report["val_accuracy"] = training.accuracy(model, x_val, y_val)
    report["params"] = int(model.count_params())
    report["layers"] = len(model.layers)
    return model, report
