"""Training helpers shared by fine_tune, prune and qat: data in, Keras fit with epoch hooks.

TensorFlow is imported inside the functions; importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from edgetune import files
from edgetune.components.common.outputs import StepOutput
from edgetune.preprocessing import PreprocessSpec, normalize

T = TypeVar("T")
EpochHook = Callable[[str, int, dict[str, float]], None]
SPLITS = ("train", "val", "test")
_METRIC_KEYS = ("sparsity_before", "sparsity", "sparsity_kept", "val_accuracy")
# qat's `mode` ("qat", "qat-partial", "ptq-fallback") and `fallback_reason` too.
_SUMMARY_KEYS = ("sparsity", "sparsity_kept", "mode", "fallback_reason")
# A float model's artifact shows its accuracy and size; a pruned or QAT model's, its sparsity.
_METADATA_KEYS = ("val_accuracy", "params")
_STAGE_METADATA_KEYS = ("sparsity",)


@dataclass(frozen=True)
class TrainReport(StepOutput):
    """fine_tune's, prune's or qat's report: train_report.json beside model.h5.

    Attributes:
        values: the report the step's core returned.
        stage: the summary.json stage whose sparsity it fills ("" for none).
    """

    FILE: ClassVar[str] = files.TRAIN_REPORT

    values: dict[str, Any]
    stage: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report's values, as written to train_report.json."""
        return dict(self.values)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainReport:
        """The report from train_report.json's content (its stage left empty)."""
        return cls(values=dict(d))

    def metrics(self) -> dict[str, float]:
        """The sparsities and the validation accuracy, those the step reported."""
        return self._pick(_METRIC_KEYS)

    def summary_part(self) -> dict[str, Any]:
        """The stage's sparsities under `stages` in summary.json (nothing without a stage)."""
        kept = self._pick(_SUMMARY_KEYS)
        return {"stages": {self.stage: kept}} if self.stage and kept else {}

    def metadata(self) -> dict[str, Any]:
        """A float model's validation accuracy and parameter count; a pruned or QAT model's sparsity."""
        return self._pick(_STAGE_METADATA_KEYS if self.stage else _METADATA_KEYS)

    def tags(self) -> dict[str, str]:
        """qat's mode and, on the post-training fallback, why (MLflow tags)."""
        if "mode" not in self.values:
            return {}
        return {
            "qat_mode": self.values["mode"],
            "qat_fallback": self.values.get("fallback_reason", ""),
        }

    def _pick(self, keys: tuple[str, ...]) -> dict[str, Any]:
        return {k: self.values[k] for k in keys if k in self.values}


def config_from(cls: type[T], values: Mapping[str, Any]) -> T:
    """A step's config from the same-named entries of `values` (a wrapper's `locals()`).

    The wrapper's inputs carry the config fields' names, so each field is passed once.
    """
    names = getattr(cls, "model_fields", None) or {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def load_spec(data_dir: str | os.PathLike) -> PreprocessSpec:
    """The preprocessing spec preprocess wrote into `data_dir`."""
    return PreprocessSpec.from_dict(files.read_json(Path(data_dir) / files.PREPROCESSING_SPEC))


def load_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's model-ready float input and integer labels, in memory."""
    x, y = load_pixels(data_dir, split)
    return normalize(x, load_spec(data_dir)), y


def load_pixels(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's uint8 pixels, as the device receives them, and integer labels, in memory.

    Reads the `.npz` arrays, or, for a data set preprocess streamed into shards, the shards.
    """
    path = files.split_file(data_dir, split)
    if not path.exists():
        from edgetune.components.preprocess import shards

        if shards.shard_paths(data_dir, split):
            return shards.read_split(data_dir, split, load_spec(data_dir))
    with np.load(path) as npz:
        return npz["x"], npz["y"].astype(np.int32)


def split_dataset(
    data_dir: str | os.PathLike, split: str, batch_size: int, *, shuffle: bool, seed: int = 0
) -> tuple[Any, int]:
    """A split as batches of model-ready input for `model.fit`, and its examples per epoch.

    Small data sets come from the in-memory arrays (the fast path); a data set preprocess
    streamed into shards is read through tf.data, shuffled across shards, with the training
    split's augmentation applied on the fly: memory stays flat whatever the data set's size.
    """
    if files.split_file(data_dir, split).exists():
        x, y = load_split(data_dir, split)
        return dataset(x, y, batch_size, shuffle=shuffle, seed=seed), len(y)
    from edgetune.components.preprocess import shards
    from edgetune.components.preprocess.core import AugmentPolicy

    doc = files.read_json(Path(data_dir) / files.PREPROCESSING_SPEC)
    policy = AugmentPolicy.from_dict(doc.get("augment")) if split == "train" else None
    ds = shards.stream(
        data_dir, split, load_spec(data_dir), batch_size, shuffle=shuffle, seed=seed, policy=policy
    )
    return ds, int(doc["counts"][split])


def dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0) -> Any:
    """A batched, prefetched tf.data pipeline over `(x, y)`, reshuffled every epoch if `shuffle`."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def compile_classifier(model: Any, learning_rate: float) -> None:
    """Compiles `model` for integer labels: Adam at `learning_rate`, sparse cross-entropy, accuracy."""
    import tf_keras as keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def epoch_callback(phase: str, on_epoch: EpochHook | None) -> list[Any]:
    """A Keras callback forwarding each epoch's logs to `on_epoch(phase, epoch, logs)`."""
    if on_epoch is None:
        return []
    import tf_keras as keras

    def forward(epoch: int, logs: dict[str, float] | None) -> None:
        on_epoch(phase, epoch, {k: float(v) for k, v in (logs or {}).items()})

    return [keras.callbacks.LambdaCallback(on_epoch_end=forward)]


def early_stopping(patience: int) -> list[Any]:
    """An EarlyStopping callback on val_loss that restores the best weights (none if patience <= 0)."""
    import tf_keras as keras

    if patience <= 0:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        )
    ]


def train_all_but_batchnorm(model: Any) -> None:
    """Every layer learns except BatchNormalization, which stays in inference mode.

    Keras 2 runs a frozen BatchNormalization layer in inference mode; with a few small
    batches of the user's data, batch statistics would wreck the pretrained moving ones.
    """
    import tf_keras as keras

    for layer in model.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


# Up to this many inputs, `scores` calls the model eagerly instead of `predict`: tracing
# predict's function costs 0.1-0.3 s per model, more than a few hundred images take eagerly
# (a test or validation split); larger arrays are faster in predict's graph.
EAGER_SCORES_MAX = 1024


def scores(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for `x` in inference mode, in batches of `batch_size`.

    Small arrays run eagerly (`model(x, training=False)`): no predict function to trace.
    """
    if not 0 < len(x) <= EAGER_SCORES_MAX:
        return model.predict(x, batch_size=batch_size, verbose=0)
    batches = [model(x[i : i + batch_size], training=False) for i in range(0, len(x), batch_size)]
    return np.concatenate([np.asarray(b) for b in batches])


def accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """The fraction of `x` whose top prediction is the label in `y`."""
    predictions = scores(model, x, batch_size)
    return float(np.mean(np.argmax(predictions, axis=-1) == y))


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow, so a training run repeats."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Saves a Keras model as H5, atomically (no half-written model file)."""
    with files.atomic_path(path) as tmp:
        model.save(tmp, save_format="h5", include_optimizer=False)
    return Path(path)


def save_model_artifact(
    model: Any, report: dict[str, Any] | TrainReport, artifact_path: str | os.PathLike
) -> Path:
    """A KFP model artifact folder: model.h5 and the step's train_report.json."""
    out = files.artifact_dir(artifact_path)
    save_model(model, out / files.KERAS_MODEL)
    (report if isinstance(report, TrainReport) else TrainReport(report)).write(out)
    return out


def load_model_artifact(artifact_path: str | os.PathLike) -> Any:
    """The model.h5 of a model artifact written by `save_model_artifact`."""
    return load_model(Path(artifact_path) / files.KERAS_MODEL)


def load_model(path: str | os.PathLike) -> Any:
    """Loads a float or pruned (stripped) Keras model saved by `save_model`."""
    import tf_keras as keras

    return keras.models.load_model(path, compile=False)


def history_of(history: Any) -> dict[str, list[float]]:
    """A Keras History's per-epoch metrics as plain floats (JSON-ready)."""
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}
