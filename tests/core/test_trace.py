"""`edgetune trace` from a bundle: the signed manifest's lineage, followed into MLflow."""

from __future__ import annotations

import mlflow
import pytest
from support import agents

from edgetune import cli
from edgetune.bundle_build import build_bundle
from edgetune.components.common import tracking
from edgetune.lineage import git_commit, params_sha256, pipeline_params


@pytest.fixture
def traced_bundle(tracking_uri, run_name, tmp_path, keys, model_file, smoke_set, monkeypatch):
    # The run context reads the environment first; an earlier test's mlflow calls set it.
    monkeypatch.setenv(tracking.TRACKING_URI_ENV, tracking_uri)
    for name in (tracking.EXPERIMENT_ENV, tracking.RUN_NAME_ENV, tracking.PARENT_RUN_ID_ENV,
                 tracking.PIPELINE_RUN_ID_ENV):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    with tracking.component_run("ingest", run_name=run_name, pipeline_run_id="job-9",
                                tracking_uri=tracking_uri):  # fmt: skip
        tracking.log_params({"val_fraction": 0.15})
    with tracking.component_run("deploy", run_name=run_name, tracking_uri=tracking_uri):
        client = mlflow.MlflowClient()
        parent_id = (
            mlflow.MlflowClient().get_run(tracking.active_run_id()).data.tags["mlflow.parentRunId"]
        )
        tracking.log_run_params(parent_id, {"data_uri": "data/digits", "target_sparsity": 0.5})
        client.set_tag(parent_id, tracking.TAG_DATA_FINGERPRINT, "f" * 64)
        lineage = tracking.bundle_lineage()
    path = build_bundle(
        tmp_path / "bundle-v1.tar", model_file, *smoke_set, version="v1", spec=agents.SPEC,
        metrics={"accuracy": 0.9}, mlflow_run_id="deploy-run", data_fingerprint="f" * 64,
        private_key=keys.private, lineage=lineage,
    )  # fmt: skip
    return path, parent_id


def test_the_manifest_names_the_parent_run_job_commit_data_and_parameters_hash(traced_bundle):
    from edgetune.bundle import peek_manifest

    path, parent_id = traced_bundle
    lineage = peek_manifest(path).lineage
    parent = mlflow.MlflowClient().get_run(parent_id)
    assert lineage["parent_run_id"] == parent_id and lineage["pipeline_run_id"] == "job-9"
    assert lineage["git_commit"] == git_commit() and len(lineage["git_commit"]) == 40
    assert lineage["data_fingerprint"] == "f" * 64
    assert lineage["params_sha256"] == params_sha256(pipeline_params(parent))


def test_trace_prints_the_chain_from_a_bundle_and_checks_the_parameters(
    traced_bundle, tracking_uri, capsys
):
    path, parent_id = traced_bundle
    assert cli.main(["trace", str(path), "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    for expected in (f"bundle   {path}", "release  v1", parent_id, "pipeline job job-9",
                     f"git {git_commit()}", "f" * 64, "(matches the runs)",
                     '"target_sparsity": "0.5"'):  # fmt: skip
        assert expected in out, expected

    mlflow.MlflowClient(tracking_uri).log_param(parent_id, "seed", "7")  # the runs changed since
    assert cli.main(["trace", str(path), "--tracking-uri", tracking_uri]) == 0
    assert "DIFFERS from the runs now" in capsys.readouterr().out


def test_trace_of_a_missing_file_is_one_line(capsys, tmp_path):
    assert cli.main(["trace", str(tmp_path / "nope.tar")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_trace_from_a_device_finds_its_deploy_run_by_the_served_sha256(
    traced_bundle, tracking_uri, start_agent, tmp_path
):
    import httpx

    from edgetune.bundle import peek_manifest
    from edgetune.errors import EdgetuneError
    from edgetune.manifest import MODEL_FILE
    from edgetune.trace import TAG_BUNDLE_VERSION, TAG_MODEL_SHA256, trace

    path, parent_id = traced_bundle
    client = mlflow.MlflowClient(tracking_uri)
    deploy = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{tracking.TAG_COMPONENT}` = 'deploy'",
    )[0]
    sha = peek_manifest(path).files[MODEL_FILE].sha256
    client.log_artifact(deploy.info.run_id, str(path), "bundle")  # as deploy keeps it
    client.set_tag(deploy.info.run_id, TAG_MODEL_SHA256, sha)
    client.set_tag(deploy.info.run_id, TAG_BUNDLE_VERSION, "v1")
    device = start_agent("device")  # a real agent on 127.0.0.1, stopped by the fixture
    answer = httpx.put(f"{device.url}/bundle", content=path.read_bytes(),
                       headers=agents.auth(), timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text

    # trace() itself: the agent's uvicorn logs to the stream capsys would close under it.
    out = "\n".join(trace(device.url, tracking_uri))
    for expected in (f"device   {device.url}: serves v1", f"model sha256 {sha}", "release  v1",
                     parent_id, "(matches the runs)"):  # fmt: skip
        assert expected in out, expected

    # A store where no run shipped it (the session's store holds other tests' deploys of it).
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(EdgetuneError, match="no deploy run .* shipped model sha256"):
        trace(device.url, empty)
