"""Warm task interpreters: tasks fork from a zygote, and behave as a fresh interpreter would."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetune.pipelines import warm

PROBE = "import os, sys; print(os.getppid(), os.environ.get('PROBE'), sys.argv[1:]); sys.exit(7)"


def task_env(**extra: str) -> dict[str, str]:
    """The environment kfp.local gives a task: this process's, plus what its command sets."""
    return {**os.environ, **warm.TASK_ENV, **extra}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture()
def light():
    """A zygote that preloads only json: its life cycle, in a fraction of a second."""
    zygote = warm.Zygote(preload=("json",))
    assert zygote.wait_ready(60)
    yield zygote
    zygote.stop()


def test_a_task_forks_from_the_zygote_with_its_own_argv_env_and_exit_code(light):
    late = {name: "set later" for name in warm.CALL_TIME_ENV}  # as local-run does
    done = subprocess.run([light.shim, "-c", PROBE, "a b"], env=task_env(PROBE="x", **late),
                          capture_output=True, text=True, timeout=30)  # fmt: skip

    assert done.returncode == 7, done.stderr
    assert done.stdout.split(" ", 2) == [str(light.process.pid), "x", "['a b']\n"]
    module = subprocess.run([light.shim, "-m", "json.tool"], input='{"a": 1}', env=task_env(),
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert module.returncode == 0 and module.stdout == '{\n    "a": 1\n}\n'


def test_a_changed_import_time_variable_or_a_dead_zygote_runs_cold(light):
    env = task_env(TF_CPP_MIN_LOG_LEVEL="0")
    cold = subprocess.run([light.shim, "-c", PROBE], env=env, capture_output=True, text=True)

    assert cold.returncode == 7 and cold.stdout.split()[0] == str(os.getpid())  # exec'd here
    assert "TF_CPP_MIN_LOG_LEVEL changed" in cold.stderr
    light.process.kill()
    light.process.wait()
    dead = subprocess.run([light.shim, "-c", PROBE], env=task_env(), capture_output=True, text=True)
    assert dead.returncode == 7 and dead.stdout.split()[0] == str(os.getpid())


def test_sigterm_to_the_shim_reaches_the_child(light):
    shim = subprocess.Popen([light.shim, "-c", "import os, time; print(os.getpid(), flush=True); "
                             "time.sleep(60)"], env=task_env(), stdout=subprocess.PIPE, text=True)  # fmt: skip
    child = int(shim.stdout.readline())

    shim.send_signal(signal.SIGTERM)
    assert shim.wait(timeout=10) == -signal.SIGTERM  # died by it, as the child did
    assert wait_gone(child)


def test_the_children_die_with_the_zygote(light):
    shim = subprocess.Popen([light.shim, "-c", "import os, time; print(os.getpid(), flush=True); "
                             "time.sleep(60)"], env=task_env(), stdout=subprocess.PIPE, text=True)  # fmt: skip
    child = int(shim.stdout.readline())

    light.process.kill()  # SIGKILL: nothing of the zygote's runs, PR_SET_PDEATHSIG does it
    assert wait_gone(child)
    assert shim.wait(timeout=10) != 0


def test_the_zygote_exits_when_its_parent_is_killed(tmp_path):
    starter = subprocess.Popen(
        [sys.executable, "-c", "from edgetune.pipelines import warm; import time; "
         "z = warm.Zygote(preload=('json',)); print(z.process.pid, z.home, flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    pid, home = starter.stdout.readline().split()

    starter.kill()
    starter.wait()
    assert wait_gone(int(pid))
    assert not Path(home).exists()


@pytest.mark.slow
def test_a_kfp_local_task_runs_warm_with_the_output_it_has_cold(tmp_path, monkeypatch):
    from kfp import dsl, local

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def probe(text: str) -> str:
        import os

        import mlflow

        return f"{text} {os.environ['PROBE']} {mlflow.get_tracking_uri()} {os.getppid()}"

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def fail():
        raise ValueError("no")

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def deploy() -> int:  # named as a step that needs no TensorFlow (warm.LIGHT_TASKS)
        import os

        return os.getppid()

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    monkeypatch.setenv("PROBE", "before")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///before.db")
    with warm.warm_tasks() as zygote:
        assert zygote.wait_ready(300), (zygote.home / "zygote.log").read_text()
        monkeypatch.setenv("PROBE", "after")  # the task's environment, not the zygote's
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///after.db")  # read when called
        text, env, uri, parent = probe(text="hello").output.split()
        light_parent = deploy().output
        heavy_parent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
        with pytest.raises(RuntimeError, match="FAILURE"):
            fail()
    cold_text, cold_env, cold_uri, cold_parent = probe(text="hello").output.split()

    assert (
        (text, env, uri)
        == (cold_text, cold_env, cold_uri)
        == ("hello", "after", "sqlite:///after.db")
    )
    # a light step forks from the first zygote, the others from the one it forked (TensorFlow)
    assert light_parent == heavy_parent == zygote.process.pid != int(cold_parent)
    assert int(parent) != zygote.process.pid
    assert not zygote.home.exists() and zygote.process.poll() is not None


def test_what_local_run_sets_after_the_zygote_started_keeps_its_tasks_warm(light, tmp_path):
    """The parent run, made while the zygote imports, sets MLflow's variables: still warm."""
    local_run_like = (  # in a child: what MLflow sets in os.environ stays out of this process
        "import subprocess, sys\n"
        "from edgetune.components.common import tracking\n"
        "from edgetune.pipelines import local_runs\n"
        f"uri = 'sqlite:///{tmp_path / 'm.db'}'\n"
        "tracking.use_experiment(uri, 'e')\n"
        "env = {'run_name': 'r', 'tracking_uri': uri, 'experiment': 'e'}\n"
        "with local_runs.exported(local_runs.context_env(env, 'parent-id')):\n"
        f"    subprocess.run([{str(light.shim)!r}, '-c', {PROBE!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", local_run_like], env=task_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip

    assert done.stdout.split()[0] == str(light.process.pid), done.stderr
