"""A local run that is interrupted (SIGINT, SIGTERM) or killed (SIGKILL) leaves nothing
RUNNING in MLflow and no agent listening."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from edgetune.components.common import tracking
from edgetune.demo_data import write_demo_digits
from edgetune.pipelines import local_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_demo_digits(root)
    return root


def start_local_run(tmp_path: Path, digits: Path) -> tuple[subprocess.Popen, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "edgetune.cli", "local-run", "--preset", "tiny",
           "--agents", "2", "--out", str(tmp_path / "runs"),
           "--set", f"data_uri={digits}", "--set", f"tracking_uri={uri}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EDGETUNE_"))}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    return proc, uri


def runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def wait_for_a_running_step(proc: subprocess.Popen, uri: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    fleets = Path(proc.args[proc.args.index("--out") + 1]).glob
    while not list(fleets("*/agents/fleet.yaml")):  # the CLI made the store before the agents
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.2)
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if any(
            r.info.status == "RUNNING" and "mlflow.parentRunId" in r.data.tags for r in runs(uri)
        ):
            return
        time.sleep(0.5)
    pytest.fail("no pipeline step started")


def agent_urls(tmp_path: Path) -> list[str]:
    import yaml

    (fleet,) = tmp_path.glob("runs/*/agents/fleet.yaml")
    return [d["url"] for d in yaml.safe_load(fleet.read_text())["devices"]]


def listening(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=1.0)
    except httpx.TransportError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_local_run_ends_killed_and_stops_its_agents(tmp_path, digits, sig):
    proc, uri = start_local_run(tmp_path, digits)
    try:
        wait_for_a_running_step(proc, uri)
        urls = agent_urls(tmp_path)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    statuses = {r.data.tags.get(tracking.TAG_COMPONENT): r.info.status for r in runs(uri)}
    assert statuses.pop("pipeline") == "KILLED"
    assert statuses and set(statuses.values()) <= {"FINISHED", "KILLED", "FAILED"}
    assert not any(listening(url) for url in urls)


def test_after_a_sigkill_the_agents_exit_and_the_next_run_marks_it_killed(tmp_path, digits):
    proc, uri = start_local_run(tmp_path, digits)
    try:
        wait_for_a_running_step(proc, uri)
        urls = agent_urls(tmp_path)
        task_pids = [p for p in _children(proc.pid) if "local-run" not in _cmdline(p)]
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in task_pids:  # the orphaned step itself would run to its end; not this test's point
        if "kfp" in _cmdline(pid):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(listening(url) for url in urls) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(listening(url) for url in urls)
    (parent,) = [r for r in runs(uri) if r.data.tags.get(tracking.TAG_COMPONENT) == "pipeline"]
    assert parent.info.status == "RUNNING"  # nobody closed it: SIGKILL cannot be caught

    mlflow.set_tracking_uri(uri)
    assert local_runs.close_stale(parent.info.experiment_id) == [parent.info.run_name]
    assert not [r for r in runs(uri) if r.info.status == "RUNNING"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
