"""The ingest KFP wrapper's python_func: the dataset artifact, its report and its MLflow run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import tracking
from edgetune.components.ingest import shards as dataset_shards
from edgetune.components.ingest.component import ingest
from edgetune.components.ingest.core import IngestReport
from edgetune.errors import EdgetuneError


def test_writes_the_dataset_and_logs_counts_fingerprint_and_quarantine(
    image_folder, tracking_uri, run_name, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="edgetune")
    src = image_folder({"cat": 6, "dog": 7})
    (src / "dog" / "broken.png").write_bytes(b"not a png")
    dataset = dsl.Dataset(uri=str(tmp_path / "dataset"))

    ingest.python_func(source=str(src), dataset=dataset, run_name=run_name,
                       tracking_uri=tracking_uri, min_per_class=3, max_quarantine_fraction=0.2)  # fmt: skip

    report = IngestReport.read(dataset.path)
    assert dataset_shards.num_rows(dataset.path) > 0
    assert report.classes == ("cat", "dog") and report.n_quarantined == 1
    assert report.n_train + report.n_val + report.n_test == 13
    assert dataset.metadata == {"fingerprint": report.fingerprint, "n_train": report.n_train,
                                "n_val": report.n_val, "n_test": report.n_test,
                                "n_quarantined": 1, "classes": ["cat", "dog"]}  # fmt: skip
    assert "quarantined dog/broken.png:" in caplog.text
    run = support.runs_of(tracking_uri, run_name)["ingest"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_fingerprint"] == report.fingerprint
    runs = support.runs_of(tracking_uri, run_name)
    for logged in (run, runs["pipeline"]):  # the dataset as a run input, on the step and the parent
        (data_input,) = logged.inputs.dataset_inputs
        assert report.fingerprint.startswith(data_input.dataset.digest)
        assert data_input.dataset.source_type and logged.data.tags["edgetune.data_fingerprint"]
    assert run.data.params["min_per_class"] == "3" and run.data.params["source"] == str(src)
    assert run.data.metrics["n_quarantined"] == 1
    client = mlflow.MlflowClient(tracking_uri)
    part = json.loads(
        Path(client.download_artifacts(run.info.run_id, tracking.SUMMARY_PART)).read_text()
    )
    assert part == {"dataset": dataset.metadata}
    logged = json.loads(
        Path(client.download_artifacts(run.info.run_id, files.INGEST_REPORT)).read_text()
    )
    assert logged == report.to_dict()


def test_a_class_too_small_fails_the_run_with_the_reason(
    image_folder, tracking_uri, run_name, tmp_path
):
    src = image_folder({"cat": 6, "dog": 2})

    with pytest.raises(EdgetuneError, match="min_per_class=5"):
        ingest.python_func(source=str(src), dataset=dsl.Dataset(uri=str(tmp_path / "d")),
                           run_name=run_name, tracking_uri=tracking_uri)  # fmt: skip

    run = support.runs_of(tracking_uri, run_name)["ingest"]
    assert run.info.status == "FAILED" and "min_per_class=5" in run.data.tags[tracking.TAG_ERROR]
    # The report naming every problem is in the failed run too.
    client = mlflow.MlflowClient(tracking_uri)
    logged = json.loads(
        Path(client.download_artifacts(run.info.run_id, files.INGEST_REPORT)).read_text()
    )
    assert logged["status"] == "stopped" and logged["small_classes"] == {"dog": 2}


def test_label_rules_merge_classes(image_folder, tracking_uri, run_name, tmp_path):
    src = image_folder({"Three": 4, "3": 4, "four": 8})
    dataset = dsl.Dataset(uri=str(tmp_path / "dataset"))

    ingest.python_func(source=str(src), dataset=dataset, run_name=run_name,
                       tracking_uri=tracking_uri, fold_case=True, label_map={"three": "3"})  # fmt: skip

    assert IngestReport.read(dataset.path).class_counts == {"3": 8, "four": 8}
