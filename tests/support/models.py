"""Shared by the model-side tests: a learnable tiny image set, a tiny zoo, trained models, MLflow.

The expensive builders are cached on their arguments (a folder under pytest's base temp),
so each model is trained once per session however many test folders use it.

The data: 16x16 grey images of one bright bar on a dim noisy background; the class is the
bar's orientation (horizontal, vertical, diagonal); position, length and brightness vary.
A pooled convolutional network learns it in a few epochs, so accuracy assertions are real.

Three kinds of model:
- digitnet, the real backbone (width 0.25), with "pretrained" weights of its own behind a
  tiny zoo entry (weights source "uri"): fine_tune.core trains it; the fine_tune tests judge.
- small: a flat few-layer classifier with digitnet's layer kinds (conv, depthwise, BN,
  ReLU6, pooling, dense), trained, then pruned by prune.core, QAT'd by qat.core (both
  schemes) and converted by convert.core; the prune, qat, convert and evaluate tests judge.
  Pruning, QAT and converting digitnet cost 10-20 s each on two cores (tfmot and the
  converter pay per layer), this model a few; the whole set must stay near two minutes.
- micro: a two-layer model for the KFP wrappers' tests, which check wiring, not learning.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgetune  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow is imported
from edgetune import files
from edgetune.config import DeviceProfile
from edgetune.preprocessing import PreprocessSpec
from edgetune.zoo.registry import ZooEntry

LABELS = ("horizontal", "vertical", "diagonal")
SIZE = 16
SPEC = PreprocessSpec(height=SIZE, width=SIZE, channels=1, scale=1 / 255, offset=0.0, labels=LABELS)
COUNTS = {"train": 96, "val": 30, "test": 30}
WIDTH = 0.25  # digitnet filters 8..128: about 18k parameters
# The backbone's last 7 layers: s4_dw, its BN and ReLU, s4_pw, its BN and ReLU, the pooling.
# Phase 2 of fine_tune may change exactly the two kernels among them.
UNFREEZE_TOP_LAYERS = 7
UNFROZEN_KERNELS = ("s4_dw", "s4_pw")
# Roomy enough for the tiny model: a board-class device that the gate's flash check passes.
ROOMY_DEVICE = DeviceProfile(
    name="roomy", flash_bytes=1 << 20, ram_bytes=1 << 20, latency_budget_ms=50, macs_per_ms=1e5
)


# ---------------------------------------------------------------------------------------------
# Data


def bar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (N, 16, 16, 1) uint8 with balanced labels 0..2 (the bar's orientation)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int32) % len(LABELS)
    rng.shuffle(y)
    x = rng.integers(0, 40, (n, SIZE, SIZE), dtype=np.uint8)
    for image, label in zip(x, y, strict=True):
        length = int(rng.integers(8, 14))
        start = int(rng.integers(0, SIZE - length + 1))
        at = int(rng.integers(2, SIZE - 3))
        value = int(rng.integers(180, 256))
        steps = np.arange(start, start + length)
        if label == 0:
            image[at : at + 2, start : start + length] = value
        elif label == 1:
            image[start : start + length, at : at + 2] = value
        else:  # a two-pixel-thick diagonal
            image[steps, steps] = value
            image[steps[:-1], steps[1:]] = value
    return x[..., None], y


def write_data(directory: Path, seed: int = 0) -> Path:
    """A preprocess-style output folder: train/val/test .npz (uint8 x, int32 y) + the spec."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(COUNTS.items()):
        x, y = bar_images(n, seed * 10 + i)
        np.savez(files.split_file(directory, split), x=x, y=y)
    files.write_json(directory / files.PREPROCESSING_SPEC, SPEC.to_dict())
    return directory


def model_ready(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from edgetune.components.common import training

    return training.load_split(data_dir, split)


# ---------------------------------------------------------------------------------------------
# The tiny zoo entry, with "pretrained" weights of its own


def tiny_entry(weights_uri: str, **changes: Any) -> ZooEntry:
    fields: dict[str, Any] = {
        "id": "tiny",
        "architecture": "digitnet",
        "arguments": {"width": WIDTH},
        "input_shape": (SIZE, SIZE, 1),
        "normalization": {"scale": 1 / 255, "offset": 0.0},
        "weights": {"source": "uri", "uri": weights_uri},
        "params": 0,
        "macs": 0,
        "peak_activation_bytes": 0,
        "top1": 0.5,
        "unfreeze_top_layers": UNFREEZE_TOP_LAYERS,
        "domain": "bars",
    }
    fields.update(changes)
    return ZooEntry(**fields)


@functools.cache
def pretrained_weights(root: Path) -> Path:
    """A digitnet (width 0.25, 16x16x1) trained briefly on other bar images; weights as H5.

    Pretrained on the same kind of task, as a zoo backbone would be, so fine-tuning only the
    head already learns something. Named like the zoo's own file (not "*.weights.h5", which
    tf_keras reads as the Keras 3 layout).
    """
    import tf_keras as keras

    from edgetune.zoo.architectures import digitnet

    keras.utils.set_random_seed(1)
    backbone = digitnet((SIZE, SIZE, 1), width=WIDTH)
    head = keras.layers.Dense(len(LABELS), activation="softmax")(backbone.output)
    model = keras.Model(backbone.input, head)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    x, y = bar_images(384, seed=99)
    model.fit(x.astype(np.float32) / 255.0, y, batch_size=32, epochs=5, verbose=0)
    path = root / "pretrained" / "tiny_weights.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    backbone.save_weights(str(path), save_format="h5")
    return path


# ---------------------------------------------------------------------------------------------
# Measuring models


def weights_by_layer(model: Any) -> dict[str, list[np.ndarray]]:
    """Every layer's weights (trainable and not: BN moving statistics too), copied."""
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


def kernels(model: Any) -> dict[str, np.ndarray]:
    """The kernels magnitude pruning acts on, by layer, read from the variables themselves.

    Which layers and weights count is tfmot's own definition (Conv2D and Dense kernels; it
    does not prune depthwise kernels). The values are read from the variables: a QAT wrapper
    replaces its inner layer's `kernel` attribute by the fake-quantized tensor, while the
    variable stays among the wrapper's weights under its own name.
    """
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not PruneRegistry.supports(inner):
            continue
        for weight in PruneRegistry._weight_names(inner):
            (variable,) = [w for w in layer.weights if w.name.rsplit("/", 1)[-1] == f"{weight}:0"]
            out[inner.name] = np.array(variable)
    return out


def kernel_sparsity(model: Any) -> float:
    """Fraction of exact zeros over all prunable kernels, measured by this module."""
    values = list(kernels(model).values())
    return sum(int(np.sum(k == 0)) for k in values) / sum(k.size for k in values)


# ---------------------------------------------------------------------------------------------
# Trained models: digitnet fine-tuned; pruning and QAT as the cores do them


@dataclass(frozen=True)
class Trained:
    """A model, the report its core returned, and the model.h5 it was saved to."""

    model: Any
    report: dict[str, Any]
    model_file: Path

    @property
    def model_dir(self) -> Path:  # a KFP Model artifact's folder
        return self.model_file.parent


@dataclass(frozen=True)
class FineTuned(Trained):
    data_dir: Path
    entry: ZooEntry
    # Every layer's weights when each phase compiled: [0] before phase 1 ("head"),
    # [1] before phase 2 ("unfreeze"), i.e. after phase 1. The model itself is after phase 2.
    at_compile: tuple[dict[str, list[np.ndarray]], ...]


FINE_TUNE_EPOCHS = {"head_epochs": 4, "unfreeze_epochs": 2}
PRUNE_TARGET = 0.5
QAT_EPOCHS = 2


@functools.cache
def fine_tuned(root: Path) -> FineTuned:
    from edgetune.components.common import training
    from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune

    data_dir = write_data(root / "data")
    entry = tiny_entry(str(pretrained_weights(root)))
    snapshots: list[dict[str, list[np.ndarray]]] = []
    compile_classifier = training.compile_classifier

    def spy(model: Any, learning_rate: float) -> None:  # a phase starts: record the weights
        snapshots.append(weights_by_layer(model))
        compile_classifier(model, learning_rate)

    config = FineTuneConfig(**FINE_TUNE_EPOCHS, batch_size=16, patience=0, head_learning_rate=1e-2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "compile_classifier", spy)
        model, report = fine_tune(entry, data_dir, config)
    model_file = training.save_model(model, root / "float" / files.KERAS_MODEL)
    return FineTuned(model, report, model_file, data_dir, entry, tuple(snapshots))


def _prune(source_file: Path, data_dir: Path, out_dir: Path, epochs: int) -> Trained:
    from edgetune.components.common import training
    from edgetune.components.prune.core import PruneConfig, prune

    config = PruneConfig(target_sparsity=PRUNE_TARGET, epochs=epochs, learning_rate=1e-3,
                         batch_size=16)  # fmt: skip
    model, report = prune(training.load_model(source_file), data_dir, config)
    return Trained(model, report, training.save_model(model, out_dir / files.KERAS_MODEL))


def _qat(source_file: Path, data_dir: Path, out_dir: Path, preserve_sparsity: bool) -> Trained:
    from edgetune.components.common import training
    from edgetune.components.qat.core import QatConfig, quantize_aware_train

    config = QatConfig(epochs=QAT_EPOCHS, learning_rate=1e-4, batch_size=16,
                       preserve_sparsity=preserve_sparsity)  # fmt: skip
    model, report = quantize_aware_train(training.load_model(source_file), data_dir, config)
    return Trained(model, report, training.save_model(model, out_dir / files.KERAS_MODEL))


# ---------------------------------------------------------------------------------------------
# The small chain


@dataclass(frozen=True)
class Small:
    data_dir: Path
    float: Trained  # report: {}
    pruned: Trained
    pqat: Trained  # prune-preserving QAT
    qat: Trained  # plain QAT


@functools.cache
def small_chain(root: Path) -> Small:
    import tf_keras as keras
    from tf_keras import layers

    from edgetune.components.common import training

    data_dir = write_data(root / "data")
    keras.utils.set_random_seed(2)

    def conv_bn_relu(x: Any, layer: Any) -> Any:
        # Digitnet's BN momentum: Keras' 0.99 lags far behind in a few dozen steps.
        x = layers.BatchNormalization(momentum=0.9, name=f"{layer.name}_bn")(layer(x))
        return layers.ReLU(6.0, name=f"{layer.name}_relu")(x)

    image = keras.Input((SIZE, SIZE, 1), name="image")
    x = conv_bn_relu(image, layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False,
                                          name="stem"))  # fmt: skip
    x = conv_bn_relu(x, layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw"))
    x = conv_bn_relu(x, layers.Conv2D(32, 3, strides=2, use_bias=False, name="conv"))
    x = conv_bn_relu(x, layers.Conv2D(128, 1, use_bias=False, name="pw"))
    x = layers.GlobalAveragePooling2D(name="features")(x)
    model = keras.Model(image, layers.Dense(len(LABELS), activation="softmax", name="head")(x))
    training.compile_classifier(model, 1e-2)
    x_train, y_train = model_ready(data_dir, "train")
    model.fit(x_train, y_train, batch_size=16, epochs=8, verbose=0)
    training.train_all_but_batchnorm(model)  # as fine_tune leaves its model
    small = Trained(model, {}, training.save_model(model, root / "small_float" / files.KERAS_MODEL))
    sparse = _prune(small.model_file, data_dir, root / "small_pruned", epochs=2)
    return Small(
        data_dir,
        small,
        sparse,
        _qat(sparse.model_file, data_dir, root / "small_pqat", True),
        _qat(sparse.model_file, data_dir, root / "small_qat", False),
    )


# ---------------------------------------------------------------------------------------------
# Micro models for the KFP wrappers' tests: the wrappers' job is wiring (artifacts in and out,
# metadata, MLflow), which a two-layer model shows as well as any, in a third of the time.


@dataclass(frozen=True)
class Micro:
    float_dir: Path  # untrained conv + dense classifier; each folder holds model.h5
    sparse_dir: Path  # the same with half of every kernel zeroed (what prune hands on)
    qat_dir: Path  # the float model wrapped for QAT, untrained (what qat hands on)
    sparsity: float  # of sparse_dir's model
    int8_dir: Path  # the float model as int8 model.tflite (what the search's choice hands on)


@functools.cache
def micro_models(root: Path) -> Micro:
    import tf_keras as keras

    from edgetune.components.common import training
    from edgetune.components.convert.core import to_int8_tflite
    from edgetune.components.qat.core import quantize_model

    keras.utils.set_random_seed(3)
    image = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    model = keras.Model(
        image, keras.layers.Dense(len(LABELS), activation="softmax", name="head")(x)
    )
    float_file = training.save_model(model, root / "micro_float" / files.KERAS_MODEL)
    calibration = np.random.default_rng(3).random((8, SIZE, SIZE, 1), dtype=np.float32)
    int8_file = files.write_bytes(root / "micro_int8" / files.TFLITE_MODEL,
                                  to_int8_tflite(model, calibration))  # fmt: skip
    for layer in (model.get_layer("conv"), model.get_layer("head")):
        kernel, bias = layer.get_weights()
        kernel[np.abs(kernel) < np.median(np.abs(kernel))] = 0.0  # magnitude pruning, by hand
        layer.set_weights([kernel, bias])
    sparse_file = training.save_model(model, root / "micro_sparse" / files.KERAS_MODEL)
    qat = quantize_model(training.load_model(float_file))
    qat_file = training.save_model(qat, root / "micro_qat" / files.KERAS_MODEL)
    return Micro(float_file.parent, sparse_file.parent, qat_file.parent, kernel_sparsity(model),
                 int8_file.parent)  # fmt: skip


def branch_folder(
    int8_dir: Path, out: Path, student: str = "teacher", accuracy: float = 0.0
) -> Path:
    """A search branch's folder: int8_dir's file and a record scoring it at `accuracy`."""
    from edgetune.components.search.core import CandidateSpec
    from edgetune.components.search.records import CandidateRecord

    spec = CandidateSpec(student, 0.5, "ptq_int8").to_dict()
    measured = {"accuracy": accuracy, "flash_bytes": 3_000, "gzip_bytes": 2_000,
                "arena_bytes": 5_000, "latency_ms": 0.1}  # fmt: skip
    CandidateRecord(spec, measured, {}, teacher_accuracy=accuracy, seconds=1.0).write(out)
    files.write_bytes(out / files.TFLITE_MODEL, (int8_dir / files.TFLITE_MODEL).read_bytes())
    return out


@dataclass(frozen=True)
class Converted:
    report: dict[str, Any]
    float_file: Path
    int8_file: Path


@functools.cache
def converted(root: Path) -> Converted:
    """The small chain's float model and PQAT model as .tflite files, by convert.core."""
    from edgetune.components.convert.core import convert

    small = small_chain(root)
    x_train, _ = model_ready(small.data_dir, "train")
    float_file = root / "tflite_float" / files.TFLITE_MODEL
    int8_file = root / "tflite_int8" / files.TFLITE_MODEL
    report = convert(small.float.model, small.pqat.model, x_train[:32], float_file, int8_file)
    return Converted(report, float_file, int8_file)


# ---------------------------------------------------------------------------------------------
# MLflow


def make_tracking_uri(directory: Path, experiment: str = "edgetune") -> str:
    """A SQLite store in `directory` whose experiment keeps its artifacts in `directory`.

    The experiment is created here with its artifact location given, so the tests' artifacts
    stay in pytest's temp folder whatever tracking._artifact_location decides (test_tracking
    checks that decision on its own).
    """
    import mlflow

    directory.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=(directory / "mlruns").as_uri())
    return uri


@functools.cache
def shared_tracking_uri(root: Path) -> str:
    return make_tracking_uri(root / "mlflow")


# ---------------------------------------------------------------------------------------------
# Fixtures: thin, over the cached builders above


def _root(factory: pytest.TempPathFactory) -> Path:
    # The same folder for every conftest that registers these fixtures: the caches key on it.
    root = factory.getbasetemp() / "model_support"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preprocess output folder with the bar images (shared: copy before changing it)."""
    return write_data(_root(tmp_path_factory) / "data")


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrained_weights(_root(tmp_path_factory))


@pytest.fixture(scope="session")
def float_run(tmp_path_factory: pytest.TempPathFactory) -> FineTuned:
    return fine_tuned(_root(tmp_path_factory))


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    return small_chain(_root(tmp_path_factory))


@pytest.fixture(scope="session")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Micro:
    return micro_models(_root(tmp_path_factory))


@pytest.fixture(scope="session")
def convert_run(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    return converted(_root(tmp_path_factory))


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the session; tests keep apart by run name."""
    return shared_tracking_uri(_root(tmp_path_factory))


@pytest.fixture
def run_name(request: pytest.FixtureRequest) -> str:
    """A pipeline run name unique to the test."""
    return f"t-{request.node.name}"[:200]


def runs_of(tracking_uri: str, run_name: str) -> dict[str, Any]:
    """The MLflow runs of pipeline run `run_name`, by component ("pipeline" is the parent)."""
    import mlflow

    from edgetune.components.common import tracking

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{tracking.TAG_RUN_NAME}` = '{run_name}'"
    )
    return {r.data.tags[tracking.TAG_COMPONENT]: r for r in runs}
