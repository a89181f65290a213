"""The evaluate KFP wrapper's python_func: the gate's answer, the registered int8 file, the alias."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from kfp import dsl
from PIL import Image
from support import models as support

from edgetune import files
from edgetune.components.common import tracking, training
from edgetune.components.evaluate.component import evaluate
from edgetune.components.search.records import SearchReport
from edgetune.components.select_model.core import select_model


def selection_for(device, weights_file, out: Path) -> dsl.Artifact:
    entry = support.tiny_entry(str(weights_file))
    chosen = select_model({entry.id: entry}, support.ROOMY_DEVICE).to_dict()
    chosen["device"] = device.to_dict()  # the device the gate measures the file against
    files.write_json(files.artifact_dir(out) / files.SELECTION, chosen)
    return dsl.Artifact(uri=str(out))


def search_verdict() -> dict:
    row = {"name": "teacher-s50-qat_int8", "accuracy": 0.9, "flash_bytes": 1, "rejected": []}
    return SearchReport([row], row["name"], row["name"], 0.9, 50.0).verdict()


def run_evaluate(small, convert_run, selection, tracking_uri, run_name, out: Path):
    report = dsl.Artifact(uri=str(out / "report"))
    metrics = dsl.Metrics(uri=str(out / "metrics"))
    blessed = evaluate.python_func(
        data=dsl.Dataset(uri=str(small.data_dir)),
        selection=selection,
        float_model=dsl.Model(uri=str(small.float.model_dir)),
        tflite_float=dsl.Model(uri=str(convert_run.float_file.parent)),
        tflite_int8=dsl.Model(uri=str(convert_run.int8_file.parent)),
        search=search_verdict(),
        report=report,
        metrics=metrics,
        run_name=run_name,
        tracking_uri=tracking_uri,
        min_accuracy=0.5,
        max_drop_points=50.0,
        latency_runs=3,
    )
    return blessed, files.read_json(Path(report.path) / files.EVALUATION), metrics


@pytest.mark.slow
def test_a_blessed_file_becomes_the_candidate_and_a_refused_one_does_not(
    small, convert_run, weights_file, tracking_uri, run_name, tmp_path
):
    registry = mlflow.MlflowClient(tracking_uri)
    roomy = selection_for(support.ROOMY_DEVICE, weights_file, tmp_path / "roomy")
    cramped_device = dataclasses.replace(support.ROOMY_DEVICE, name="cramped", flash_bytes=1024)
    cramped = selection_for(cramped_device, weights_file, tmp_path / "cramped")

    blessed, report, metrics = run_evaluate(
        small, convert_run, roomy, tracking_uri, f"{run_name}-a", tmp_path / "a"
    )

    assert blessed is True and report["gate"]["blessed"] is True
    version = report["registered_version"]
    candidate = registry.get_model_version_by_alias(tracking.REGISTERED_MODEL, "candidate")
    assert str(candidate.version) == version and candidate.tags["blessed"] == "True"
    assert candidate.tags["gate.min_accuracy"] == "0.5"  # how strict the gate was
    # what a later run's search compares a champion by
    assert json.loads(candidate.tags["edgetune.labels"]) == list(support.LABELS)
    assert json.loads(candidate.tags["edgetune.input_shape"]) == [support.SIZE, support.SIZE, 1]
    assert "pass: search chose teacher-s50-qat_int8 of 1 candidates" in report["gate"]["reasons"]
    assert (
        candidate.tags["gate.max_drop_points"] == "50.0" and candidate.tags["edgetune.git_commit"]
    )
    int8 = mlflow.pyfunc.load_model(f"models:/{tracking.REGISTERED_MODEL}/{version}")
    pixels = training.load_pixels(small.data_dir, "test")[0][:2]
    assert list(int8.predict(pixels).columns) == ["label", "class_index", "score"]
    evaluate_run = support.runs_of(tracking_uri, f"{run_name}-a")["evaluate"]
    logged = {m.name: m for m in registry.search_logged_models([evaluate_run.info.experiment_id],
              filter_string=f"source_run_id = '{evaluate_run.info.run_id}'")}  # fmt: skip
    assert set(logged) == {"int8_model", "float_model"}
    assert "tensorflow" in mlflow.models.get_model_info(logged["float_model"].model_uri).flavors
    float_model = mlflow.tensorflow.load_model(logged["float_model"].model_uri)  # H5 inside
    assert float_model.predict(np.zeros((1, *float_model.input_shape[1:])), verbose=0).shape[0] == 1
    assert metrics.metadata["tflite_int8_accuracy"] == report["stages"]["tflite_int8"]["accuracy"]
    assert files.read_json(metrics.path) == metrics.metadata  # kfp.local caches only a real file
    for stage in report["stages"]:
        with Image.open(tmp_path / "a" / "report" / f"confusion_{stage}.png") as image:
            assert image.format == "PNG"

    refused, report_b, _ = run_evaluate(
        small, convert_run, cramped, tracking_uri, f"{run_name}-b", tmp_path / "b"
    )

    assert refused is False
    assert any(
        r.startswith("FAIL: int8 file") and "of cramped" in r for r in report_b["gate"]["reasons"]
    )
    assert int(report_b["registered_version"]) == int(version) + 1  # registered all the same
    refused_version = registry.get_model_version(
        tracking.REGISTERED_MODEL, report_b["registered_version"]
    )
    assert refused_version.tags["blessed"] == "False"
    candidate = registry.get_model_version_by_alias(tracking.REGISTERED_MODEL, "candidate")
    assert str(candidate.version) == version  # the alias stayed on the blessed file
    run = support.runs_of(tracking_uri, f"{run_name}-b")["evaluate"]
    assert run.data.metrics["blessed"] == 0
    part = registry.download_artifacts(run.info.run_id, tracking.SUMMARY_PART)
    gate = json.loads(Path(part).read_text())["gate"]
    assert gate == {"blessed": False, "reasons": report_b["gate"]["reasons"],
                    "model_version": report_b["registered_version"]}  # fmt: skip
