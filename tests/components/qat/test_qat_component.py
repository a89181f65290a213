"""The qat KFP wrapper's python_func: a QAT model.h5 that loads, and the sparsity it kept."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import tracking
from edgetune.components.qat.component import qat
from edgetune.components.qat.core import load_qat_model


@pytest.mark.slow
def test_writes_a_loadable_qat_model_that_kept_the_sparsity(
    micro, tiny_data, tracking_uri, run_name, tmp_path
):
    model = dsl.Model(uri=str(tmp_path / "qat"))

    qat.python_func(
        data=dsl.Dataset(uri=str(tiny_data)),
        pruned_model=dsl.Model(uri=str(micro.sparse_dir)),
        model=model,
        run_name=run_name,
        tracking_uri=tracking_uri,
        epochs=1,
        batch_size=16,
    )

    written = load_qat_model(Path(model.path) / files.KERAS_MODEL)
    measured = support.kernel_sparsity(written)
    assert measured == pytest.approx(micro.sparsity, rel=0.02)
    report = files.read_json(Path(model.path) / files.TRAIN_REPORT)
    assert report["sparsity"] == pytest.approx(measured) and report["sparsity_kept"] >= 0.98
    assert model.metadata == {"sparsity": report["sparsity"]}
    run = support.runs_of(tracking_uri, run_name)["qat"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["sparsity_kept"] == pytest.approx(report["sparsity_kept"])
    assert "qat_train_loss" in run.data.metrics  # the epoch logger reached MLflow
    part = mlflow.MlflowClient(tracking_uri).download_artifacts(
        run.info.run_id, tracking.SUMMARY_PART
    )
    assert json.loads(Path(part).read_text())["stages"]["qat"]["sparsity"] == report["sparsity"]
