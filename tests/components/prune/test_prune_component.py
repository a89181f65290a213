"""The prune KFP wrapper's python_func: a sparse model.h5, the sparsity in metadata and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import tracking, training
from edgetune.components.prune.component import prune


@pytest.mark.slow
def test_prunes_the_float_model_to_the_asked_sparsity(
    micro, tiny_data, tracking_uri, run_name, tmp_path
):
    model = dsl.Model(uri=str(tmp_path / "pruned"))

    prune.python_func(
        data=dsl.Dataset(uri=str(tiny_data)),
        float_model=dsl.Model(uri=str(micro.float_dir)),
        model=model,
        run_name=run_name,
        tracking_uri=tracking_uri,
        target_sparsity=0.3,
        epochs=1,
        batch_size=16,
    )

    written = training.load_model(Path(model.path) / files.KERAS_MODEL)
    measured = support.kernel_sparsity(written)
    assert measured == pytest.approx(0.3, abs=0.02)
    report = files.read_json(Path(model.path) / files.TRAIN_REPORT)
    assert report["sparsity"] == pytest.approx(measured)
    assert report["config"]["target_sparsity"] == 0.3
    assert model.metadata == {"sparsity": report["sparsity"]}
    run = support.runs_of(tracking_uri, run_name)["prune"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["sparsity"] == pytest.approx(measured)
    assert run.data.params["target_sparsity"] == "0.3"
    part = mlflow.MlflowClient(tracking_uri).download_artifacts(
        run.info.run_id, tracking.SUMMARY_PART
    )
    assert json.loads(Path(part).read_text()) == {
        "stages": {"pruned": {"sparsity": report["sparsity"]}}
    }


def test_a_bad_target_fails_the_run_before_any_work(tiny_data, tracking_uri, run_name, tmp_path):
    with pytest.raises(ValueError, match="target_sparsity=1.0"):
        prune.python_func(
            data=dsl.Dataset(uri=str(tiny_data)),
            float_model=dsl.Model(uri=str(tmp_path / "never-read")),
            model=dsl.Model(uri=str(tmp_path / "pruned")),
            run_name=run_name,
            tracking_uri=tracking_uri,
            target_sparsity=1.0,
        )

    run = support.runs_of(tracking_uri, run_name)["prune"]
    assert (
        run.info.status == "FAILED" and "target_sparsity=1.0" in run.data.tags[tracking.TAG_ERROR]
    )
    assert not (tmp_path / "pruned").exists()
