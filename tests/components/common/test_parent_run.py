"""One parent run per pipeline run, even when the first steps start at the same moment."""

from __future__ import annotations

import multiprocessing

import mlflow
import pytest
from support import models as support

from edgetune.components.common import tracking


def _first_step(component: str, uri: str, barrier, results) -> None:
    barrier.wait()  # both processes reach the store together, as ingest and select_model do
    with tracking.component_run(
        component, run_name="", pipeline_run_id="job-race", tracking_uri=uri
    ) as run:
        results.put((component, run.data.tags["mlflow.parentRunId"]))


@pytest.mark.parametrize("trial", range(3))
def test_two_first_steps_started_together_on_a_fresh_store_share_one_parent(
    tmp_path, trial, monkeypatch
):
    monkeypatch.setattr(tracking, "PARENT_SETTLE_S", 1.0)  # the real wait (forked children)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.use_experiment(uri, tracking.DEFAULT_EXPERIMENT)  # the store exists, not the run
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_first_step, args=(name, uri, barrier, results))
        for name in ("ingest", "select_model")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    attached = dict(results.get(timeout=5) for _ in workers)

    parents = support.runs_of(uri, "job-race")
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    every_parent = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{tracking.TAG_COMPONENT}` = 'pipeline'"
    )
    assert len(every_parent) == 1  # the loser deleted its duplicate
    assert set(attached.values()) == {parents["pipeline"].info.run_id}
    assert parents["pipeline"].data.tags[tracking.TAG_PIPELINE_RUN_ID] == "job-race"


def test_the_environment_names_the_run_before_the_inputs(monkeypatch, tracking_uri):
    parent = mlflow.MlflowClient(tracking_uri).create_run(
        mlflow.MlflowClient(tracking_uri)
        .get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
        .experiment_id
    )
    monkeypatch.setenv(tracking.RUN_NAME_ENV, "from-env")
    monkeypatch.setenv(tracking.PIPELINE_RUN_ID_ENV, "job-env")
    monkeypatch.setenv(tracking.TRACKING_URI_ENV, tracking_uri)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, tracking.DEFAULT_EXPERIMENT)
    monkeypatch.setenv(tracking.PARENT_RUN_ID_ENV, parent.info.run_id)

    ctx = tracking.run_context("from-input", "job-input", "sqlite:///elsewhere.db", "other")
    assert ctx == tracking.RunContext(
        "from-env", "job-env", tracking_uri, tracking.DEFAULT_EXPERIMENT, parent.info.run_id
    )
    with tracking.component_run(
        "ingest", run_name="from-input", pipeline_run_id="job-input", experiment="other"
    ) as run:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    for name in (tracking.RUN_NAME_ENV, tracking.PARENT_RUN_ID_ENV):
        monkeypatch.delenv(name)
    assert tracking.run_context("from-input").run_name == "from-input"


def test_close_runs_ends_the_parent_and_its_running_steps(tracking_uri, run_name):
    with tracking.component_run("ingest", run_name=run_name, tracking_uri=tracking_uri):
        pass
    parent = support.runs_of(tracking_uri, run_name)["pipeline"]
    client = mlflow.MlflowClient(tracking_uri)
    stuck = client.create_run(  # a step killed mid-way: its run never ended
        parent.info.experiment_id,
        run_name="prune",
        tags={"mlflow.parentRunId": parent.info.run_id, tracking.TAG_RUN_NAME: run_name,
              tracking.TAG_COMPONENT: "prune"},
    )  # fmt: skip
    assert tracking.close_runs(parent.info.run_id, "KILLED") == 2
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    assert client.get_run(stuck.info.run_id).info.status == "KILLED"
    runs = support.runs_of(tracking_uri, run_name)
    assert runs["ingest"].info.status == "FINISHED"  # what ended on its own is left alone
