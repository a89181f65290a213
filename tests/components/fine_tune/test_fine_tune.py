"""fine_tune on the tiny bar images: one flat model, a frozen phase 1, a narrow phase 2."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune.components.common import training
from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune
from edgetune.errors import EdgetuneError


def backbone_layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers if layer.name not in ("head_dropout", "head")]


def changed(before: dict, after: dict) -> set[str]:
    return {
        name
        for name, weights in after.items()
        if any(not np.array_equal(a, b) for a, b in zip(before[name], weights, strict=True))
    }


@pytest.mark.slow
def test_the_classifier_is_one_flat_functional_graph(float_run):
    import tf_keras as keras

    model = float_run.model

    assert type(model).__name__ == "Functional"
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.input_shape == (None, 16, 16, 1) and model.output_shape == (None, 3)
    assert model.layers[0].name == "image" and model.layers[-1].name == "head"
    assert float_run.report["params"] == model.count_params()
    assert float_run.report["layers"] == len(model.layers)


@pytest.mark.slow
def test_phase_one_loads_the_pretrained_backbone_and_trains_only_the_head(float_run, weights_file):
    from edgetune.zoo.architectures import digitnet

    start, end_of_phase_one = float_run.at_compile
    pretrained = digitnet((16, 16, 1), width=support.WIDTH)
    pretrained.load_weights(str(weights_file))

    for name in backbone_layer_names(float_run.model):
        for a, b in zip(start[name], pretrained.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)  # the URI weights were loaded
    assert changed(start, end_of_phase_one) == {"head"}  # BN statistics included: unchanged
    assert float_run.report["phases"]["head"]["trainable_backbone_layers"] == 0


@pytest.mark.slow
def test_phase_two_opens_only_the_top_kernels_and_never_batchnorm(float_run):
    import tf_keras as keras

    _, end_of_phase_one = float_run.at_compile
    final = support.weights_by_layer(float_run.model)

    assert changed(end_of_phase_one, final) == {*support.UNFROZEN_KERNELS, "head"}
    batchnorm = [
        layer.name
        for layer in float_run.model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(batchnorm) >= 5
    assert not changed(float_run.at_compile[0], final) & set(batchnorm)
    assert float_run.report["phases"]["unfreeze"]["trainable_backbone_layers"] == 2


@pytest.mark.slow
def test_it_learns_the_task_and_reports_each_phase(float_run):
    x_test, y_test = support.model_ready(float_run.data_dir, "test")

    assert training.accuracy(float_run.model, x_test, y_test) >= 0.8  # chance: 0.33
    assert float_run.report["val_accuracy"] >= 0.8
    phases = float_run.report["phases"]
    assert [phases[p]["epochs_run"] for p in ("head", "unfreeze")] == [4, 2]
    assert len(phases["head"]["history"]["val_accuracy"]) == 4
    assert float_run.report["zoo_id"] == "tiny" and float_run.report["pretrained"] is True


@pytest.mark.slow
def test_the_returned_model_trains_everything_but_batchnorm_as_prune_and_qat_will(float_run):
    import tf_keras as keras

    for layer in float_run.model.layers:
        assert layer.trainable != isinstance(layer, keras.layers.BatchNormalization), layer.name


def test_data_sized_for_another_model_is_refused_before_training(tiny_data, tmp_path):
    entry = support.tiny_entry(str(tmp_path / "never-read.h5"), input_shape=(32, 32, 1))

    with pytest.raises(EdgetuneError, match=r"is 16x16x1, but tiny takes \(32, 32, 1\)"):
        fine_tune(entry, tiny_data, FineTuneConfig())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"head_epochs": -1}, "fine_tune head_epochs=-1; accepted: an integer >= 0"),
        ({"head_epochs": 0, "unfreeze_epochs": 0}, "nothing would train"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"dropout": 1.0}, r"dropout=1.0; accepted: a number in \[0, 1\)"),
        (
            {"unfreeze_learning_rate": 0.0},
            r"unfreeze_learning_rate=0.0; accepted: a number in \(0, 1\)",
        ),
    ],
)
def test_config_rejects_values_that_cannot_train(fields, message):
    with pytest.raises(EdgetuneError, match=message):
        FineTuneConfig(**fields)


@pytest.mark.slow
def test_the_from_scratch_baseline_trains_batchnorm_too(float_run):
    import tf_keras as keras

    config = FineTuneConfig(head_epochs=1, unfreeze_epochs=0, batch_size=32)
    model, report = fine_tune(float_run.entry, float_run.data_dir, config, pretrained=False)

    assert list(report["phases"]) == ["scratch"]
    first_bn = model.get_layer("c0_bn")
    assert isinstance(first_bn, keras.layers.BatchNormalization)
    gamma, _, moving_mean, _ = first_bn.get_weights()
    assert np.any(moving_mean != 0) or np.any(gamma != 1)  # else still at their initial values
