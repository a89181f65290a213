"""prune on the fine-tuned digitnet: the target sparsity on every prunable kernel, stripped."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgetune.components.common import files, training
from edgetune.components.prune.core import PruneConfig, prunable_kernels, sparsity
from edgetune.errors import EdgetuneError

support = sys.modules["edgetune_tests_model_support"]  # loaded by conftest.py

PRUNABLE = ["block0_pw", "block1_pw", "block2_pw", "block3_pw", "block4_pw", "block5_pw", "head",
            "stem"]  # fmt: skip


@pytest.mark.slow
def test_every_prunable_kernel_reaches_the_target_sparsity(prune_run):
    measured = support.kernels(prune_run.model)

    assert sorted(measured) == PRUNABLE  # tfmot leaves depthwise kernels dense
    for name, kernel in measured.items():
        assert np.mean(kernel == 0) == pytest.approx(support.PRUNE_TARGET, abs=0.02), name
    overall = support.kernel_sparsity(prune_run.model)
    assert overall == pytest.approx(support.PRUNE_TARGET, abs=0.02)
    assert prune_run.report["sparsity"] == pytest.approx(overall)
    assert prune_run.report["pruned_layers"] == PRUNABLE


@pytest.mark.slow
def test_the_model_comes_back_stripped_with_the_float_models_layers(prune_run, float_run):
    layers = prune_run.model.layers

    assert not [type(layer).__name__ for layer in layers if "Prune" in type(layer).__name__]
    assert [layer.name for layer in layers] == [layer.name for layer in float_run.model.layers]
    # Saved and loaded without tfmot's scope: plain Keras layers only.
    reloaded = training.load_model(prune_run.model_file)
    assert support.kernel_sparsity(reloaded) == pytest.approx(prune_run.report["sparsity"])


@pytest.mark.slow
def test_the_pruned_model_still_classifies_and_its_zeros_compress(prune_run, float_run):
    x_test, y_test = support.model_ready(float_run.data_dir, "test")

    assert training.accuracy(prune_run.model, x_test, y_test) >= 0.6  # chance: 0.33
    assert 0.0 <= prune_run.report["val_accuracy"] <= 1.0

    def gzipped(model) -> int:
        return files.gzip_size(b"".join(k.tobytes() for k in support.kernels(model).values()))

    assert gzipped(prune_run.model) < 0.75 * gzipped(float_run.model)


@pytest.mark.slow
def test_sparsity_reads_plain_and_qat_models_alike(prune_run, pqat_run, float_run):
    for model in (prune_run.model, pqat_run.model, float_run.model):
        assert sparsity(model) == pytest.approx(support.kernel_sparsity(model))
        assert sorted(prunable_kernels(model)) == PRUNABLE
    assert sparsity(float_run.model) < 0.01  # trained weights are almost never exactly zero


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target_sparsity": 1.0}, r"target_sparsity=1.0; accepted: \[0, 1\)"),
        ({"target_sparsity": -0.1}, r"target_sparsity=-0.1; accepted: \[0, 1\)"),
        ({"epochs": 0}, "epochs=0; must be >= 1"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"learning_rate": 1.5}, r"learning_rate=1.5; accepted: \(0, 1\)"),
    ],
)
def test_config_rejects_values_outside_their_range(fields, message):
    with pytest.raises(EdgetuneError, match=message):
        PruneConfig(**fields)
    PruneConfig(target_sparsity=0.0)  # no pruning at all is allowed
