"""prune on a small trained classifier: the target sparsity on every prunable kernel, stripped."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune import files
from edgetune.components.common import training
from edgetune.components.prune.core import PruneConfig, prunable_kernels, sparsity
from edgetune.errors import EdgetuneError

PRUNABLE = ["conv", "head", "pw", "stem"]  # the small model's Conv2D and Dense layers


@pytest.mark.slow
def test_every_prunable_kernel_reaches_the_target_sparsity(small):
    pruned = small.pruned
    measured = support.kernels(pruned.model)

    assert sorted(measured) == PRUNABLE  # tfmot leaves depthwise kernels dense
    for name, kernel in measured.items():
        assert np.mean(kernel == 0) == pytest.approx(support.PRUNE_TARGET, abs=0.02), name
    overall = support.kernel_sparsity(pruned.model)
    assert overall == pytest.approx(support.PRUNE_TARGET, abs=0.02)
    assert pruned.report["sparsity"] == pytest.approx(overall)
    assert pruned.report["pruned_layers"] == PRUNABLE


@pytest.mark.slow
def test_the_model_comes_back_stripped_with_the_float_models_layers(small):
    pruned, dense = small.pruned, small.float
    layers = pruned.model.layers

    assert not [type(layer).__name__ for layer in layers if "Prune" in type(layer).__name__]
    assert [layer.name for layer in layers] == [layer.name for layer in dense.model.layers]
    # Saved and loaded without tfmot's scope: plain Keras layers only.
    reloaded = training.load_model(pruned.model_file)
    assert support.kernel_sparsity(reloaded) == pytest.approx(pruned.report["sparsity"])


@pytest.mark.slow
def test_the_pruned_model_still_classifies_and_its_zeros_compress(small):
    pruned, dense = small.pruned, small.float
    x_val, y_val = support.model_ready(small.data_dir, "val")
    x_test, y_test = support.model_ready(small.data_dir, "test")

    assert training.accuracy(pruned.model, x_test, y_test) >= 0.8  # chance: 0.33
    assert pruned.report["val_accuracy"] == training.accuracy(pruned.model, x_val, y_val)

    def gzipped(model) -> int:
        return files.gzip_size(b"".join(k.tobytes() for k in support.kernels(model).values()))

    assert gzipped(pruned.model) < 0.75 * gzipped(dense.model)


@pytest.mark.slow
def test_without_validation_the_same_model_is_trained_and_no_val_figures_reported(small):
    from edgetune.components.prune.core import prune

    # As the fixture pruned it, validating.
    config = PruneConfig(target_sparsity=support.PRUNE_TARGET, epochs=2, learning_rate=1e-3,
                         batch_size=16)  # fmt: skip
    model, report = prune(training.load_model(small.float.model_file), small.data_dir, config,
                          validate=False)  # fmt: skip

    assert "val_accuracy" not in report and "val_loss" not in report["history"]
    assert report["sparsity"] == small.pruned.report["sparsity"]
    for ours, validated in zip(model.get_weights(), small.pruned.model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, validated)


@pytest.mark.slow
def test_sparsity_reads_plain_and_qat_models_alike(small):
    for model in (small.float.model, small.pruned.model, small.pqat.model, small.qat.model):
        assert sparsity(model) == pytest.approx(support.kernel_sparsity(model))
        assert sorted(prunable_kernels(model)) == PRUNABLE
    assert sparsity(small.float.model) < 0.01  # trained weights are almost never exactly zero


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target_sparsity": 1.0}, r"prune target_sparsity=1.0; accepted: a number in \[0, 1\)"),
        ({"target_sparsity": -0.1}, r"target_sparsity=-0.1; accepted: a number in \[0, 1\)"),
        ({"epochs": 0}, "epochs=0; accepted: an integer >= 1"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"learning_rate": 1.5}, r"learning_rate=1.5; accepted: a number in \(0, 1\)"),
    ],
)
def test_config_rejects_values_outside_their_range(fields, message):
    with pytest.raises(EdgetuneError, match=message):
        PruneConfig(**fields)
    PruneConfig(target_sparsity=0.0)  # no pruning at all is allowed
