"""The deploy KFP wrapper's python_func against real agents: bundle, report, champion alias."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from kfp import dsl
from support import agents
from support import models as support

from edgetune import files
from edgetune.agent.pull import PullConfig, Puller
from edgetune.agent.service import Agent
from edgetune.channel import read_channel
from edgetune.components.common import tracking
from edgetune.components.common.summary import format_table
from edgetune.components.deploy.component import deploy
from edgetune.components.deploy.core import RolloutReport
from edgetune.components.evaluate.core import Evaluation
from edgetune.components.ingest.core import IngestReport
from edgetune.errors import EdgetuneError
from edgetune.pipelines.params import step_configs
from edgetune.signing import load_public_key

INT8 = {"accuracy": 0.9, "size_bytes": 1, "gzip_bytes": 1, "latency_ms_p50": 0.1}


@pytest.fixture
def inputs(tmp_path, data_dir, model_file, tracking_uri, run_name):
    """deploy's four input artifacts; the int8 file registered as a new model version."""
    model_dir = files.artifact_dir(tmp_path / "int8")
    (model_dir / files.TFLITE_MODEL).write_bytes(model_file.read_bytes())
    with tracking.component_run("evaluate", run_name, tracking_uri=tracking_uri):
        version = tracking.register_model_file(str(model_dir / files.TFLITE_MODEL))
    Evaluation(stages={"tflite_int8": INT8}, gate={"blessed": True, "reasons": [], "policy": {}},
               n_test=10, registered_version=version).write(tmp_path / "evaluation")  # fmt: skip
    IngestReport(source="src", status="ok", problems=(), fingerprint="fp-9",
                 classes=("zero", "one", "two"), class_counts={}, counts={}, n_train=1, n_val=1,
                 n_test=10, n_quarantined=0, quarantined_by_reason={}, quarantined=(),
                 empty_classes=(), small_classes={}, label_conflicts=(), duplicates=(),
                 n_duplicates=0, near_empty=(), ignored_files=0, skipped={},
                 image_sizes={}).write(tmp_path / "dataset")  # fmt: skip
    return {
        "dataset": dsl.Dataset(uri=str(tmp_path / "dataset")),
        "data": dsl.Dataset(uri=str(data_dir)),
        "tflite_int8": dsl.Model(uri=str(model_dir)),
        "evaluation": dsl.Artifact(uri=str(tmp_path / "evaluation")),
        "bundle": dsl.Artifact(uri=str(tmp_path / "bundle")),
    }, version


def fleet_file(tmp_path: Path, urls: list[str]) -> str:
    path = tmp_path / "fleet.yaml"
    devices = [
        {"name": f"dev-{i}", "url": u, "token_ref": "env:AGENT_TOKEN"} for i, u in enumerate(urls)
    ]
    path.write_text(yaml.safe_dump({"devices": devices}))
    return str(path)


def champion(tracking_uri: str) -> str | None:
    try:
        found = mlflow.MlflowClient(tracking_uri).get_model_version_by_alias(
            tracking.REGISTERED_MODEL, "champion"
        )
    except mlflow.exceptions.MlflowException:
        return None
    return str(found.version)


def test_every_device_serves_the_bundle_and_the_champion_moves_to_it(
    inputs, start_agent, keys, tracking_uri, run_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("AGENT_TOKEN", agents.TOKEN)
    artifacts, version = inputs
    fleet = [start_agent("a"), start_agent("b")]

    deploy.python_func(**artifacts, run_name=run_name, tracking_uri=tracking_uri,
                       fleet_file=fleet_file(tmp_path, [a.url for a in fleet]),
                       signing_key=str(keys.private), smoke_samples=4)  # fmt: skip

    assert [httpx.get(f"{a.url}/health").json()["version"] for a in fleet] == [f"v{version}"] * 2
    report = RolloutReport.read(artifacts["bundle"].path)
    assert [d["status"] for d in report.devices] == ["deployed", "deployed"]
    assert (Path(artifacts["bundle"].path) / f"bundle-v{version}.tar").is_file()
    assert artifacts["bundle"].metadata == {"mode": "push", "version": f"v{version}", "devices": 2}
    assert champion(tracking_uri) == version
    run = support.runs_of(tracking_uri, run_name)["deploy"]
    assert run.info.status == "FINISHED" and run.data.metrics["succeeded"] == 2
    part = mlflow.MlflowClient(tracking_uri).download_artifacts(
        run.info.run_id, tracking.SUMMARY_PART
    )
    assert json.loads(Path(part).read_text()) == {"deploy": report.to_dict()}


def test_an_unreachable_device_fails_the_step_and_the_champion_stays(
    inputs, start_agent, keys, tracking_uri, run_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("AGENT_TOKEN", agents.TOKEN)
    artifacts, version = inputs
    before = champion(tracking_uri)
    urls = [start_agent("a").url, f"http://127.0.0.1:{agents.free_port()}"]

    with pytest.raises(
        EdgetuneError, match=rf"rollout of v{version} reached 1/2 devices; dev-1: failed"
    ):
        deploy.python_func(**artifacts, run_name=run_name, tracking_uri=tracking_uri,
                           fleet_file=fleet_file(tmp_path, urls), signing_key=str(keys.private))  # fmt: skip

    report = RolloutReport.read(artifacts["bundle"].path)  # every device reported all the same
    assert [d["status"] for d in report.devices] == ["deployed", "failed"]
    assert champion(tracking_uri) == before != version
    run = support.runs_of(tracking_uri, run_name)["deploy"]
    assert run.info.status == "FAILED"


def test_no_signing_key_fails_before_any_device_is_contacted(
    inputs, start_agent, tracking_uri, run_name, tmp_path
):
    artifacts, _ = inputs
    agent = start_agent("a")

    with pytest.raises(EdgetuneError, match="deploy needs signing_key"):
        deploy.python_func(**artifacts, run_name=run_name, tracking_uri=tracking_uri,
                           fleet_file=fleet_file(tmp_path, [agent.url]))  # fmt: skip

    assert httpx.get(f"{agent.url}/health").json()["version"] is None


def test_pull_mode_publishes_a_signed_channel_an_agent_installs_from(
    inputs, keys, tracking_uri, run_name, tmp_path
):
    artifacts, version = inputs
    before = champion(tracking_uri)
    uri = str(tmp_path / "channel")

    deploy.python_func(**artifacts, run_name=run_name, tracking_uri=tracking_uri,
                       signing_key=str(keys.private), deploy_mode="pull", channel_uri=uri,
                       channel_waves="100")  # fmt: skip

    report = RolloutReport.read(artifacts["bundle"].path)
    published = read_channel(uri, load_public_key(keys.public))
    assert (report.mode, report.devices, report.channel["uri"]) == ("pull", [], uri)
    assert (published.version, published.sequence) == (f"v{version}", report.sequence)
    assert published.model_sha256 == report.model_sha256 == report.channel["model_sha256"]
    assert "pull: published" in format_table({"deploy": report.to_dict()})
    assert champion(tracking_uri) == before  # no device has said it serves it yet
    agent = Agent(tmp_path / "device", load_public_key(keys.public))
    status = Puller(agent, PullConfig(uri, 1.0, "dev-1"), 1 << 26).poll_once()
    assert (status["state"], status["model_sha256"]) == ("installed", report.model_sha256)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"deploy_mode": "pull"}, "deploy_mode=pull needs channel_uri"),
        ({"deploy_mode": "drop"}, "deploy_mode 'drop'; accepted: push or pull"),
        ({"channel_uri": "s3://b/x"}, "channel_uri is set but deploy_mode is push"),
        ({"deploy_mode": "pull", "channel_uri": "s3://b/x", "channel_waves": "150"},
         "channel_waves item '150'"),
    ],
)  # fmt: skip
def test_deploy_mode_and_channel_are_checked_before_the_run(params, message):
    with pytest.raises(EdgetuneError, match=re.escape(message)):
        step_configs({"data_uri": "data", **params})
