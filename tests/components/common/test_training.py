"""Training helpers: model-ready splits, datasets, callbacks, trainability and H5 round trips."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune import files
from edgetune.components.common import training


def tiny_model():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    image = keras.Input((support.SIZE, support.SIZE, 1))
    x = keras.layers.Conv2D(4, 3, strides=4, name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, keras.layers.Dense(3, activation="softmax", name="head")(x))


def test_load_split_applies_the_spec_to_the_stored_uint8(tiny_data):
    x, y = training.load_split(tiny_data, "val")

    with np.load(files.split_file(tiny_data, "val")) as raw:
        np.testing.assert_allclose(x, raw["x"] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(y, raw["y"])
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert training.load_spec(tiny_data) == support.SPEC


def test_dataset_batches_everything_once_and_shuffles_only_when_asked():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10, dtype=np.int32)

    plain = [b[1].numpy().tolist() for b in training.dataset(x, y, 4, shuffle=False)]
    mixed = np.concatenate([b[1].numpy() for b in training.dataset(x, y, 4, shuffle=True)])

    assert plain == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert sorted(mixed.tolist()) == list(range(10)) and mixed.tolist() != list(range(10))


@pytest.mark.slow
def test_epoch_callback_forwards_phase_epoch_and_float_logs(tiny_data):
    seen = []
    model = tiny_model()
    training.compile_classifier(model, 1e-3)
    x, y = training.load_split(tiny_data, "val")

    callbacks = training.epoch_callback("head", lambda *args: seen.append(args))
    model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)

    assert [(phase, epoch) for phase, epoch, _ in seen] == [("head", 0), ("head", 1)]
    assert {"loss", "accuracy"} <= seen[0][2].keys()
    assert all(type(v) is float for v in seen[0][2].values())
    assert training.epoch_callback("head", None) == []


def test_early_stopping_is_off_at_zero_patience_and_restores_best_weights_otherwise():
    assert training.early_stopping(0) == []
    (callback,) = training.early_stopping(3)
    assert (callback.monitor, callback.patience, callback.restore_best_weights) == (
        "val_loss",
        3,
        True,
    )


def test_train_all_but_batchnorm_freezes_exactly_the_batchnorm_layers():
    model = tiny_model()
    for layer in model.layers:
        layer.trainable = False

    training.train_all_but_batchnorm(model)

    frozen = {layer.name for layer in model.layers if not layer.trainable}
    assert frozen == {"bn"}


def test_save_model_round_trips_weights_and_predictions_atomically(tmp_path):
    model = tiny_model()
    x = np.random.default_rng(0).random((4, support.SIZE, support.SIZE, 1), dtype=np.float32)
    target = tmp_path / files.KERAS_MODEL

    training.save_model(model, target)
    loaded = training.load_model(target)

    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [files.KERAS_MODEL]  # no temporary left


def test_accuracy_counts_argmax_hits():
    outputs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])

    class Fixed:  # a small array is scored eagerly, batch by batch
        def __call__(self, x, training):
            assert training is False
            return outputs[x.astype(int)]

    hits = training.accuracy(Fixed(), np.arange(4), np.array([0, 1, 1, 1]), batch_size=3)
    assert hits == pytest.approx(0.75)


def test_scores_are_the_same_eagerly_and_through_predict(monkeypatch):
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    x = np.random.default_rng(0).random((10, 3), dtype=np.float32)

    eager = training.scores(model, x, batch_size=4)
    monkeypatch.setattr(training, "EAGER_SCORES_MAX", 5)  # 10 inputs: through predict
    np.testing.assert_array_equal(eager, training.scores(model, x, batch_size=4))


def test_a_train_report_fills_its_stage_only_with_the_sparsity_it_measured():
    from edgetune.components.common.training import TrainReport

    float_report = TrainReport({"val_accuracy": 0.8, "params": 1000, "config": {}})
    pruned = TrainReport({"sparsity": 0.5, "val_accuracy": 0.7, "config": {}}, stage="pruned")
    qat = TrainReport({"sparsity_before": 0.5, "sparsity": 0.49, "sparsity_kept": 0.98,
                       "val_accuracy": 0.7}, stage="qat")  # fmt: skip

    assert float_report.summary_part() == {} and float_report.metrics() == {"val_accuracy": 0.8}
    assert float_report.metadata() == {"val_accuracy": 0.8, "params": 1000}
    assert pruned.summary_part() == {"stages": {"pruned": {"sparsity": 0.5}}}
    assert pruned.metadata() == {"sparsity": 0.5}
    assert qat.summary_part() == {"stages": {"qat": {"sparsity": 0.49, "sparsity_kept": 0.98}}}
    assert list(qat.metrics()) == ["sparsity_before", "sparsity", "sparsity_kept", "val_accuracy"]
    fallback = TrainReport({"sparsity": 0.5, "mode": "ptq-fallback", "fallback_reason": "Lambda"},
                           stage="qat")  # fmt: skip
    assert fallback.summary_part() == {
        "stages": {"qat": {"sparsity": 0.5, "mode": "ptq-fallback", "fallback_reason": "Lambda"}}
    }
    assert fallback.tags() == {"qat_mode": "ptq-fallback", "qat_fallback": "Lambda"}
    assert qat.tags() == {}


def test_config_from_takes_the_configs_fields_by_name_and_nothing_else():
    import dataclasses

    from edgetune.components.common.training import config_from

    @dataclasses.dataclass(frozen=True)
    class Config:
        epochs: int
        seed: int = 0

    wrapper_locals = {"epochs": 3, "seed": 7, "run_name": "r", "data": object()}

    assert config_from(Config, wrapper_locals) == Config(epochs=3, seed=7)
