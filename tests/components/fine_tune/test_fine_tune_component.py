"""The fine_tune KFP wrapper's python_func: a loadable flat model.h5, its report, its MLflow run."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import training
from edgetune.components.fine_tune.component import fine_tune
from edgetune.components.select_model.core import select_model


@pytest.mark.slow
def test_trains_and_writes_a_flat_model_with_its_report(
    tiny_data, weights_file, tracking_uri, run_name, tmp_path
):
    import tf_keras as keras

    entry = support.tiny_entry(str(weights_file))
    selection = dsl.Artifact(uri=str(tmp_path / "selection"))
    files.write_json(
        files.artifact_dir(selection.path) / files.SELECTION,
        select_model({entry.id: entry}, support.ROOMY_DEVICE).to_dict(),
    )
    model = dsl.Model(uri=str(tmp_path / "model"))

    fine_tune.python_func(
        data=dsl.Dataset(uri=str(tiny_data)),
        selection=selection,
        model=model,
        run_name=run_name,
        tracking_uri=tracking_uri,
        head_epochs=2,
        unfreeze_epochs=1,
        batch_size=16,
        head_learning_rate=1e-2,
        patience=0,
    )

    loaded = training.load_model(Path(model.path) / files.KERAS_MODEL)
    assert not any(isinstance(layer, keras.Model) for layer in loaded.layers)
    assert loaded.output_shape == (None, len(support.LABELS))
    report = files.read_json(Path(model.path) / files.TRAIN_REPORT)
    assert report["zoo_id"] == "tiny" and list(report["phases"]) == ["head", "unfreeze"]
    assert model.metadata == {"val_accuracy": report["val_accuracy"], "params": report["params"]}
    x_val, y_val = support.model_ready(tiny_data, "val")
    assert training.accuracy(loaded, x_val, y_val) == pytest.approx(report["val_accuracy"])
    run = support.runs_of(tracking_uri, run_name)["fine_tune"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val_accuracy"] == pytest.approx(report["val_accuracy"])
    assert run.data.params["head_epochs"] == "2" and "head_train_loss" in run.data.metrics
