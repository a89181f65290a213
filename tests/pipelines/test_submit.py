"""`edgetune submit` against a fake Kubeflow Pipelines API server on loopback: upload, version,
experiment, run, auth, and the values it refuses before sending anything."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import fsspec
import pytest

from edgetune.cli import main as cli
from edgetune.components.common import tracking
from edgetune.pipelines import submit
from edgetune.pipelines.compile import compile_pipeline
from tests.support.kfp_api import running_kfp
from tests.support.models import runs_of

TOKEN = "secret-token-for-tests"
GOOD = [
    "--set",
    "data_uri=memory://edgetune-tests/digits",
    "--set",
    "tracking_uri=http://mlflow.mlflow.svc:5000",
    "--set",
    "signing_key=/var/run/secrets/edgetune/signing/signing.key",
    "--set",
    "fleet_file=/etc/edgetune/fleet.yaml",
]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("ir") / "edgetune.yaml")


RECORD_PARENT = submit.record_parent
PARENTS: list[tuple] = []  # what submit asked of MLflow, when the tests stand in for it


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GOOD's tracking server is a cluster's: no test talks to it (see the record_parent tests)
    PARENTS.clear()
    monkeypatch.setattr(submit, "record_parent", lambda *a: PARENTS.append(a) or "")
    for name in ("MLFLOW_TRACKING_URI", "KF_PIPELINES_TOKEN", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # the kfp client reads ~/.config/kfp
    fs = fsspec.filesystem("memory")
    fs.pipe("/edgetune-tests/digits/0/a.png", b"png-bytes")


def _submit(host: str, package: Path, *extra: str, token: str = TOKEN) -> int:
    args = ["submit", "--host", host, "--package", str(package), "--namespace", "team-a"]
    return cli([*args, *(["--token", token] if token else []), *GOOD, *extra])


def test_uploads_pipeline_then_versions_and_runs_in_experiment_and_namespace(
    package: Path, capsys: pytest.CaptureFixture
) -> None:
    with running_kfp(token=TOKEN) as kfp:
        assert _submit(kfp.url, package, "--experiment", "digits") == 0
        assert _submit(kfp.url, package, "--experiment", "digits") == 0  # same content
        changed = package.with_name("changed.yaml")
        changed.write_text(package.read_text().replace("Fine-tune, prune", "Fine-tune and prune"))
        assert _submit(kfp.url, changed, "--experiment", "digits") == 0

    (pipeline,) = kfp.pipelines.values()
    assert (pipeline["display_name"], pipeline["namespace"]) == ("edgetune", "team-a")
    versions = kfp.versions[pipeline["pipeline_id"]]
    assert len(versions) == 2  # the first upload, then one new version for the new content
    assert versions[1]["display_name"].startswith("edgetune-")
    assert "package sha256" in versions[0]["description"]
    (experiment,) = kfp.experiments.values()
    assert (experiment["display_name"], experiment["namespace"]) == ("digits", "team-a")
    assert len(kfp.runs) == 3
    first, second, third = kfp.runs
    assert first["experiment_id"] == experiment["experiment_id"]
    reference = first["pipeline_version_reference"]
    assert reference["pipeline_version_id"] == versions[0]["pipeline_version_id"]
    assert second["pipeline_version_reference"] == reference  # reused, not uploaded again
    assert (
        third["pipeline_version_reference"]["pipeline_version_id"]
        == versions[1]["pipeline_version_id"]
    )
    sent = first["runtime_config"]["parameters"]
    assert sent["data_uri"] == "memory://edgetune-tests/digits"
    assert sent["tracking_uri"] == "http://mlflow.mlflow.svc:5000"
    assert sent["data_version"].startswith("listing:")  # the bucket's listing, read from here
    assert sent["code_version"]
    assert first["display_name"] == sent["run_name"]
    assert "submitted kfp-" in capsys.readouterr().out
    # the parent MLflow run gets the parameters, found by the run's name and id as pods find it
    params, run_id, experiment = PARENTS[0]
    assert (params, run_id, experiment) == (sent, first["run_id"], "edgetune")


def test_data_version_follows_the_listing(package: Path) -> None:
    with running_kfp(token=TOKEN) as kfp:
        _submit(kfp.url, package)
        fsspec.filesystem("memory").pipe("/edgetune-tests/digits/1/b.png", b"more")
        _submit(kfp.url, package)
    before, after = (r["runtime_config"]["parameters"]["data_version"] for r in kfp.runs)
    assert before != after


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data_uri=data/digits", "data_uri='data/digits' is a path on this machine"),
        ("data_uri=/srv/data/digits", "data_uri='/srv/data/digits' is a path on this machine"),
        ("model_uri=models/mine.h5", "model_uri='models/mine.h5' is a path on this machine"),
        ("signing_key=.edgetune/keys/signing.key", "signing_key='.edgetune/keys/signing.key'"),
        ("fleet_file=/home/me/fleet.yaml", "fleet_file='/home/me/fleet.yaml' is not in a volume"),
        ("devices_file=/etc/edgetune-other/d.yaml", "devices_file="),
        ("tracking_uri=sqlite:///mlflow.db", "tracking_uri='sqlite:///mlflow.db'"),
        ("tracking_uri=./mlruns", "tracking_uri='./mlruns'"),
        ("tracking_uri=", "tracking_uri=''"),
    ],
)
def test_refuses_what_a_pod_cannot_read_before_sending_anything(
    package: Path, capsys: pytest.CaptureFixture, override: str, named: str
) -> None:
    with running_kfp(token=TOKEN) as kfp:
        assert _submit(kfp.url, package, "--set", override) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1, err
    assert kfp.requests == []


def test_tracking_uri_from_the_environment_is_used(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    args = [a for a in GOOD if not a.startswith("tracking_uri=")]
    args = [a for i, a in enumerate(args) if not (a == "--set" and args[i + 1] == "--set")]
    with running_kfp() as kfp:
        code = cli(["submit", "--host", kfp.url, "--package", str(package), *args])
    assert code == 0
    assert kfp.runs[0]["runtime_config"]["parameters"]["tracking_uri"] == (
        "https://mlflow.example.com"
    )


def test_unreachable_host_is_one_line(package: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _submit(f"http://127.0.0.1:{port}", package) == 2
    err = capsys.readouterr().err
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("token", ["", "wrong-token-0123456789"])
def test_unauthorised_is_one_line(package: Path, capsys: pytest.CaptureFixture, token: str) -> None:
    with running_kfp(token=TOKEN) as kfp:
        assert _submit(kfp.url, package, token=token) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "--token" in err and err.count("\n") == 1
    assert kfp.pipelines == {} and kfp.runs == []


def test_token_from_the_environment(
    package: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    with running_kfp(token=TOKEN) as kfp:
        assert _submit(kfp.url, package, token="") == 0
    assert len(kfp.runs) == 1


def test_api_error_after_health_is_one_line(package: Path, capsys: pytest.CaptureFixture) -> None:
    with running_kfp(token=TOKEN) as kfp:
        kfp.pipelines["x"] = {"pipeline_id": "x", "display_name": "edgetune"}
        kfp.pipelines["y"] = {"pipeline_id": "y", "display_name": "edgetune"}  # not unique
        assert _submit(kfp.url, package) == 2
    err = capsys.readouterr().err
    assert "Multiple pipelines with the name: edgetune" in err and err.count("\n") == 1


def test_fake_server_records_requests_as_json(package: Path) -> None:
    """The fake answers what the kfp client parses: the run body it stored is the client's."""
    with running_kfp(token=TOKEN) as kfp:
        _submit(kfp.url, package)
    assert "GET /apis/v2beta1/healthz" in kfp.paths()
    assert "POST /apis/v2beta1/pipelines/upload" in kfp.paths()
    assert "POST /apis/v2beta1/runs" in kfp.paths()
    json.dumps(kfp.runs)


def test_data_it_cannot_list_runs_afresh(package: Path, capsys: pytest.CaptureFixture) -> None:
    with running_kfp(token=TOKEN) as kfp:
        assert _submit(kfp.url, package, "--set", "data_uri=s3://bucket/photos") == 0
    assert kfp.runs[0]["runtime_config"]["parameters"]["data_version"].startswith("unlisted:")
    assert "cannot list s3://bucket/photos from here" in capsys.readouterr().out


def test_the_parent_run_gets_every_parameter_whether_a_task_made_it_first_or_not(
    tmp_path: Path, run_name: str
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {"run_name": run_name, "tracking_uri": uri, "target_sparsity": 0.7}
    with tracking.component_run("ingest", run_name, "kfp-run-1", uri):
        pass  # the first task of the run, quicker than submit: it made the parent

    assert RECORD_PARENT(params, "kfp-run-1") == ""
    RECORD_PARENT({**params, "run_name": f"{run_name}-b"}, "kfp-run-2")  # no task yet: made here
    with tracking.component_run("ingest", f"{run_name}-b", "kfp-run-2", uri):
        pass

    for name in (run_name, f"{run_name}-b"):
        runs = runs_of(uri, name)
        assert set(runs) == {"pipeline", "ingest"}  # one parent, the task nested under it
        assert runs["pipeline"].data.params["target_sparsity"] == "0.7"
        assert runs["pipeline"].data.params["head_epochs"]  # the declared defaults too


def test_an_unreachable_tracking_server_is_a_warning_after_the_run_is_submitted(
    package: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submit, "record_parent", RECORD_PARENT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with running_kfp(token=TOKEN) as kfp:
        assert _submit(kfp.url, package, "--set", f"tracking_uri=http://127.0.0.1:{port}") == 0

    assert len(kfp.runs) == 1
    (warning,) = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert f"not on its MLflow parent run (http://127.0.0.1:{port})" in warning
