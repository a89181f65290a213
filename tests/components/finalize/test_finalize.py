"""finalize, the exit handler: summary.json on the parent run, which it ends FINISHED or FAILED."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import summary, tracking
from edgetune.components.finalize.component import finalize


def final_status(state: str, error: str | None = None) -> dsl.PipelineTaskFinalStatus:
    return dsl.PipelineTaskFinalStatus(
        state=state,
        pipeline_job_resource_name="projects/p/locations/l/pipelineJobs/job-1",
        pipeline_task_name="exit-handler-1",
        error_code=None if error is None else 13,
        error_message=error,
    )


def component(name: str, run_name: str, tracking_uri: str, part: dict | None = None) -> None:
    with tracking.component_run(
        name, run_name=run_name, pipeline_run_id="job-1", tracking_uri=tracking_uri
    ):
        if part:
            tracking.log_summary_part(part)


def logged_summary(tracking_uri: str, parent) -> dict:
    local = mlflow.MlflowClient(tracking_uri).download_artifacts(parent.info.run_id, files.SUMMARY)
    return json.loads(Path(local).read_text())


def test_a_successful_run_ends_finished_with_the_merged_summary(tracking_uri, run_name, caplog):
    caplog.set_level(logging.INFO, logger="edgetune")
    component("ingest", run_name, tracking_uri, {"dataset": {"n_train": 96, "classes": ["a", "b"]}})
    component("evaluate", run_name, tracking_uri,
              {"stages": {"tflite_int8": {"accuracy": 0.9}}, "gate": {"blessed": True}})  # fmt: skip

    finalize.python_func(
        status=final_status("SUCCEEDED"), run_name=run_name, tracking_uri=tracking_uri
    )

    parent = support.runs_of(tracking_uri, run_name)["pipeline"]
    assert parent.info.status == "FINISHED"
    result = logged_summary(tracking_uri, parent)
    assert result["status"] == "SUCCEEDED" and result["mlflow_run_id"] == parent.info.run_id
    assert result["dataset"] == {"n_train": 96, "classes": ["a", "b"]}
    assert result["stages"]["tflite_int8"] == {"accuracy": 0.9}
    assert result["gate"] == {"blessed": True} and result["errors"] == {}
    assert list(result["component_seconds"]) == ["ingest", "evaluate"]
    assert set(summary.TOP_KEYS) <= result.keys()
    printed = caplog.text
    assert run_name in printed and "BLESSED" in printed


def test_a_failed_run_ends_failed_with_the_pipeline_and_component_errors(tracking_uri, run_name):
    component("ingest", run_name, tracking_uri, {"dataset": {"n_train": 96}})
    with (
        pytest.raises(ValueError),
        tracking.component_run("prune", run_name=run_name, tracking_uri=tracking_uri),
    ):
        raise ValueError("prune target_sparsity=1.0; accepted: [0, 1)")

    finalize.python_func(
        status=final_status("FAILED", "task prune failed"),
        run_name=run_name,
        tracking_uri=tracking_uri,
    )

    parent = support.runs_of(tracking_uri, run_name)["pipeline"]
    assert parent.info.status == "FAILED"
    result = logged_summary(tracking_uri, parent)
    assert result["status"] == "FAILED"
    assert result["errors"] == {
        "prune": "ValueError: prune target_sparsity=1.0; accepted: [0, 1)",
        "pipeline": "task prune failed",
    }
    assert result["dataset"] == {"n_train": 96}  # what ran before the failure is kept


def test_a_run_that_failed_before_any_component_still_gets_a_closed_parent_and_summary(
    tracking_uri, run_name
):
    finalize.python_func(
        status=final_status("CANCELLED"), run_name=run_name, tracking_uri=tracking_uri
    )

    runs = support.runs_of(tracking_uri, run_name)
    assert list(runs) == ["pipeline"] and runs["pipeline"].info.status == "FAILED"
    result = logged_summary(tracking_uri, runs["pipeline"])
    assert result["status"] == "CANCELLED" and result["component_seconds"] == {}


def test_the_parent_carries_headline_metrics_and_a_model_card_and_stuck_steps_end_failed(
    tracking_uri, run_name
):
    component("ingest", run_name, tracking_uri,
              {"dataset": {"n_train": 96, "classes": ["a", "b"], "fingerprint": "f" * 64}})  # fmt: skip
    with tracking.component_run(
        "evaluate", run_name=run_name, pipeline_run_id="job-1", tracking_uri=tracking_uri
    ):
        tracking.log_params({"min_accuracy": 0.3, "max_drop_points": 50.0})
        tracking.log_summary_part(
            {
                "stages": {"tflite_int8": {"accuracy": 0.9, "size_bytes": 1200}},
                "gate": {
                    "blessed": True,
                    "reasons": ["int8 accuracy 90.00% >= 30.00%"],
                    "model_version": "4",
                },
            }  # fmt: skip
        )
    parent = support.runs_of(tracking_uri, run_name)["pipeline"]
    client = mlflow.MlflowClient(tracking_uri)
    stuck = client.create_run(parent.info.experiment_id, run_name="deploy",
                              tags={"mlflow.parentRunId": parent.info.run_id})  # fmt: skip

    finalize.python_func(
        status=final_status("SUCCEEDED"), run_name=run_name, pipeline_run_id="job-1",
        tracking_uri=tracking_uri,
    )  # fmt: skip

    parent = client.get_run(parent.info.run_id)
    assert parent.data.metrics["tflite_int8_accuracy"] == 0.9
    assert (
        parent.data.metrics["tflite_int8_size_bytes"] == 1200
        and parent.data.metrics["blessed"] == 1
    )
    assert client.get_run(stuck.info.run_id).info.status == "FAILED"
    card = Path(client.download_artifacts(parent.info.run_id, "model_card.md")).read_text()
    for expected in ("## Data", "fingerprint: `" + "f" * 64, "## Compression", "| int8 .tflite",
                     "min_accuracy=0.3", "max_drop_points=50.0", "**BLESSED**", "## Lineage",
                     parent.info.run_id, "models:/edgetune-int8/4", "confusion_tflite_int8.png"):  # fmt: skip
        assert expected in card, expected
