"""MLflow tracking: one parent run per pipeline run, nested component runs, the model registry."""

from __future__ import annotations

import dataclasses
import json
import logging
import types
from pathlib import Path
from typing import ClassVar

import mlflow
import pytest
from support import models as support

from edgetune.components.common import tracking
from edgetune.components.common.outputs import StepOutput
from edgetune.errors import EdgetuneError


def client(tracking_uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri)


def test_component_runs_of_one_pipeline_run_share_one_parent(tracking_uri, run_name):
    with tracking.component_run(
        "ingest", run_name=run_name, pipeline_run_id="job-7", tracking_uri=tracking_uri
    ) as first:
        pass
    with tracking.component_run(
        "preprocess", run_name=run_name, tracking_uri=tracking_uri
    ) as second:
        pass
    with tracking.component_run("ingest", run_name=f"{run_name}-other", tracking_uri=tracking_uri):
        pass

    runs = support.runs_of(tracking_uri, run_name)
    parent = runs.pop("pipeline")
    assert sorted(runs) == ["ingest", "preprocess"]
    for child, active in ((runs["ingest"], first), (runs["preprocess"], second)):
        assert child.info.run_id == active.info.run_id
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == child.data.tags[tracking.TAG_COMPONENT]
        assert child.info.status == "FINISHED"
    assert parent.data.tags[tracking.TAG_PIPELINE_RUN_ID] == "job-7"  # set by the first to come
    assert parent.info.status == "RUNNING"  # finalize ends it, not the components
    other = support.runs_of(tracking_uri, f"{run_name}-other")
    assert other["pipeline"].info.run_id != parent.info.run_id


def test_an_error_inside_marks_the_run_failed_with_the_cause_and_propagates(tracking_uri, run_name):
    with (
        pytest.raises(EdgetuneError, match="bad value"),
        tracking.component_run("prune", run_name=run_name, tracking_uri=tracking_uri),
    ):
        raise EdgetuneError("prune target_sparsity=1.0: bad value\nsecond line")

    run = support.runs_of(tracking_uri, run_name)["prune"]
    assert run.info.status == "FAILED"
    assert (
        run.data.tags[tracking.TAG_ERROR] == "EdgetuneError: prune target_sparsity=1.0: bad value"
    )
    assert mlflow.active_run() is None  # the next component can start its own run


def test_params_metrics_and_the_summary_part_land_in_the_nested_run(tracking_uri, run_name):
    with tracking.component_run("fine_tune", run_name=run_name, tracking_uri=tracking_uri) as run:
        tracking.log_params({"epochs": 3, "shape": (16, 16, 1), "on": True})
        log = tracking.epoch_logger("")
        log("head", 0, {"loss": 1.5, "val_accuracy": 0.5})
        log("head", 1, {"loss": 0.5})
        tracking.log_summary_part({"model": {"zoo_id": "tiny"}})

    data = client(tracking_uri).get_run(run.info.run_id).data
    assert data.params == {"epochs": "3", "shape": "(16, 16, 1)", "on": "True"}
    history = client(tracking_uri).get_metric_history(run.info.run_id, "head_train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.5), (1, 0.5)]
    assert data.metrics["head_val_accuracy"] == 0.5  # training and validation named apart
    part = client(tracking_uri).download_artifacts(run.info.run_id, tracking.SUMMARY_PART)
    assert json.loads(Path(part).read_text()) == {"model": {"zoo_id": "tiny"}}


def test_register_model_file_adds_versions_and_set_model_alias_moves_the_alias(
    tracking_uri, run_name, tmp_path
):
    name = f"edgetune-test-{run_name}"
    model = tmp_path / "model.tflite"
    versions = []
    for content in (b"first", b"second"):
        model.write_bytes(content)
        with tracking.component_run("evaluate", run_name=run_name, tracking_uri=tracking_uri):
            versions.append(tracking.register_model_file(str(model), name=name, tags={"k": "v"}))

    assert versions == ["1", "2"]
    registry = client(tracking_uri)
    second = registry.get_model_version(name, "2")
    assert second.tags == {"k": "v"}
    local = registry.download_artifacts(second.run_id, f"registered/{model.name}")
    assert Path(local).read_bytes() == b"second"

    tracking.set_model_alias("candidate", "1", name=name, tracking_uri=tracking_uri)
    assert str(registry.get_model_version_by_alias(name, "candidate").version) == "1"
    tracking.set_model_alias("candidate", "2", name=name, tracking_uri=tracking_uri)
    assert str(registry.get_model_version_by_alias(name, "candidate").version) == "2"
    assert registry.get_model_version(name, "1").aliases == []


def test_the_tracking_uri_comes_from_the_environment_else_a_local_sqlite_file(
    monkeypatch, tmp_path
):
    monkeypatch.setenv(tracking.TRACKING_URI_ENV, "http://mlflow:5000")
    assert tracking.resolve_tracking_uri() == "http://mlflow:5000"
    assert tracking.resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.delenv(tracking.TRACKING_URI_ENV)
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_one_line_keeps_the_type_and_first_line():
    assert tracking.one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert tracking.one_line(KeyError()) == "KeyError: "


def test_a_new_experiment_keeps_its_artifacts_beside_the_sqlite_file(
    tracking_uri, run_name, tmp_path, monkeypatch
):
    """Not in <cwd>/<the database's absolute path without its leading slash>/mlruns, where an
    earlier _artifact_location put them (stripping every leading slash of sqlite:////abs).
    """
    monkeypatch.chdir(tmp_path)  # where misplaced artifacts would go
    experiment_id = tracking.use_experiment(tracking_uri, f"fresh-{run_name}")

    location = client(tracking_uri).get_experiment(experiment_id).artifact_location
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    assert location == (database.parent / "mlruns").as_uri()


@dataclasses.dataclass(frozen=True)
class _Output(StepOutput):
    FILE: ClassVar[str] = "out.json"
    ATTACHMENTS: ClassVar[tuple[str, ...]] = ("extra.txt",)

    n: int

    def to_dict(self):
        return {"n": self.n}

    def metrics(self):
        return {"n": self.n}

    def summary_part(self):
        return {"model": {"n": self.n}}

    def metadata(self):
        return {"shown": self.n}

    def tags(self):
        return {"kind": "test"}

    def notes(self):
        return [f"n is {self.n}"]


def test_record_logs_an_outputs_file_attachments_metrics_part_tags_metadata_and_notes(
    tracking_uri, run_name, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger=tracking.log.name)
    artifact = types.SimpleNamespace(path=str(tmp_path), metadata={})
    (tmp_path / "extra.txt").write_text("extra")

    with tracking.component_run("step", run_name, "", tracking_uri) as run:
        tracking.record(_Output(4), artifact)

    c = client(tracking_uri)
    data = c.get_run(run.info.run_id).data
    assert data.metrics == {"n": 4} and data.tags["kind"] == "test"
    assert {a.path for a in c.list_artifacts(run.info.run_id)} == {
        "out.json", "extra.txt", tracking.SUMMARY_PART}  # fmt: skip
    part = c.download_artifacts(run.info.run_id, tracking.SUMMARY_PART)
    assert json.loads(Path(part).read_text()) == {"model": {"n": 4}}
    assert artifact.metadata == {"shown": 4}
    assert [r.getMessage() for r in caplog.records if r.name == tracking.log.name] == ["n is 4"]


def test_log_params_takes_configs_dicts_and_names_with_a_prefix(tracking_uri, run_name):
    @dataclasses.dataclass
    class Config:
        epochs: int = 2
        rate: float = 0.5

    with tracking.component_run("step", run_name, tracking_uri=tracking_uri) as run:
        tracking.log_params(Config(), {"a": 1}, seed=3)
        tracking.log_params(Config(epochs=9), prefix="p_")

    assert client(tracking_uri).get_run(run.info.run_id).data.params == {
        "epochs": "2", "rate": "0.5", "a": "1", "seed": "3", "p_epochs": "9", "p_rate": "0.5"}  # fmt: skip


def test_move_aliases_moves_each_alias_the_core_chose_and_no_other(
    tracking_uri, run_name, tmp_path
):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"int8")
    with tracking.component_run("evaluate", run_name, tracking_uri=tracking_uri):
        first = tracking.register_model_file(str(model), name=f"m-{run_name}")
        second = tracking.register_model_file(str(model), name=f"m-{run_name}")
    tracking.set_model_alias("a", first, name=f"m-{run_name}", tracking_uri=tracking_uri)

    tracking.move_aliases({"b": second}, tracking_uri=tracking_uri, name=f"m-{run_name}")
    tracking.move_aliases({}, tracking_uri=tracking_uri, name=f"m-{run_name}")

    aliases = client(tracking_uri).get_registered_model(f"m-{run_name}").aliases
    assert aliases == {"a": int(first), "b": int(second)}
