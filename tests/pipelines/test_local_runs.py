"""A local run's MLflow life: the experiment opens on its runs, dead runs are found."""

from __future__ import annotations

import os

import mlflow

from edgetune.components.common import tracking
from edgetune.pipelines import local_runs


def test_the_experiment_is_model_development_and_the_hint_is_its_runs_page(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.use_experiment(uri, "edgetune")
    experiment = mlflow.MlflowClient(uri).get_experiment(experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    hint = local_runs.runs_page_hint({"tracking_uri": uri, "experiment": "edgetune"})
    assert f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs" in hint


def test_a_process_identity_outlives_pid_reuse_only_while_the_process_runs():
    mine = local_runs.process_identity(os.getpid())
    assert local_runs.is_alive(mine) is True
    host, pid, start = mine.rsplit(":", 2)
    assert local_runs.is_alive(f"{host}:{pid}:{int(start) + 1}") is False  # same pid, other process
    assert local_runs.is_alive(f"elsewhere:{pid}:{start}") is None  # another host: unknown
