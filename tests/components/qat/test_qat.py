"""qat on the pruned small classifier: PQAT keeps the zeros, plain QAT does not; H5 round trip."""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune.components.common import training
from edgetune.components.qat.core import QatConfig, load_qat_model
from edgetune.errors import EdgetuneError


@pytest.mark.slow
def test_prune_preserving_qat_keeps_every_pruned_zero(small):
    before = support.kernels(small.pruned.model)
    after = support.kernels(small.pqat.model)

    assert after.keys() == before.keys()
    for name, kernel in before.items():
        assert np.all(after[name][kernel == 0] == 0), name  # the same positions, still zero
    kept = support.kernel_sparsity(small.pqat.model) / support.kernel_sparsity(small.pruned.model)
    assert kept >= 0.98
    report = small.pqat.report
    assert report["sparsity_before"] == pytest.approx(support.kernel_sparsity(small.pruned.model))
    assert report["sparsity"] == pytest.approx(support.kernel_sparsity(small.pqat.model))
    assert report["sparsity_kept"] >= 0.98


@pytest.mark.slow
def test_plain_qat_retrains_the_zeros_away(small):
    """The trap the prune-preserving scheme exists for: every weight gets Adam updates."""
    assert support.kernel_sparsity(small.qat.model) < 0.1  # from 0.5
    assert small.qat.report["sparsity_kept"] < 0.2
    assert small.qat.report["config"]["preserve_sparsity"] is False


@pytest.mark.slow
def test_the_qat_model_is_fake_quantized_and_still_classifies(small):
    names = {type(layer).__name__ for layer in small.pqat.model.layers}
    assert {"QuantizeLayer", "QuantizeWrapperV2"} <= names
    x_test, y_test = support.model_ready(small.data_dir, "test")

    assert training.accuracy(small.pqat.model, x_test, y_test) >= 0.8  # chance: 0.33
    assert small.pqat.report["val_accuracy"] >= 0.8
    assert len(small.pqat.report["history"]["loss"]) == support.QAT_EPOCHS


@pytest.mark.slow
def test_a_saved_qat_model_loads_back_with_the_same_weights_and_outputs(small, tmp_path):
    target = training.save_model(small.pqat.model, tmp_path / "model.h5")

    loaded = load_qat_model(target)

    x_test, _ = support.model_ready(small.data_dir, "test")
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), small.pqat.model.predict(x_test, verbose=0), atol=1e-6
    )
    assert support.kernel_sparsity(loaded) == support.kernel_sparsity(small.pqat.model)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"epochs": -1}, "qat epochs=-1; accepted: an integer >= 0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"learning_rate": 0.0}, r"learning_rate=0.0; accepted: a number in \(0, 1\)"),
    ],
)
def test_config_rejects_values_outside_their_range(fields, message):
    with pytest.raises(EdgetuneError, match=message):
        QatConfig(**fields)
