"""A local run's MLflow life: the parent run created once, closed on every exit.

`edgetune local-run` creates the parent before the DAG starts and hands its id to the tasks
through the environment. SIGINT and SIGTERM end the run KILLED (the running task is stopped
too); a run whose CLI was SIGKILLed is found by the next local run, which marks it KILLED.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from edgetune.components.common import tracking

TAG_LOCAL_PROCESS = "edgetune.local_process"
UI_PORT = 5000  # `make mlflow-ui`'s default port


def process_identity(pid: int) -> str:
    """`host:pid:start` (start: the kernel's start time of `pid`), unique despite pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may hold spaces
    except (OSError, IndexError):
        start = ""
    return f"{socket.gethostname()}:{pid}:{start}"


def is_alive(identity: str) -> bool | None:
    """Whether the process named by `identity` still runs; None when it ran on another host."""
    host, pid, start = identity.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if start:
        return process_identity(int(pid)) == identity
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_stale(experiment_id: str) -> list[str]:
    """Marks KILLED the RUNNING parent runs (and their steps) of dead local runs on this host.

    Returns:
        The run names it closed.
    """
    import mlflow

    client = mlflow.MlflowClient()
    stale = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_LOCAL_PROCESS}` LIKE '{socket.gethostname()}:%' "
        "and attributes.status = 'RUNNING'",
    )
    closed = []
    for run in stale:
        if is_alive(run.data.tags[TAG_LOCAL_PROCESS]) is False:
            client.set_tag(run.info.run_id, tracking.TAG_ERROR, "its local-run process was killed")
            tracking.close_runs(run.info.run_id, "KILLED")
            closed.append(run.info.run_name)
    return closed


def start_parent(params: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Creates the parent run of local run `params["run_name"]` with its parameters.

    Closes dead local runs first, so the runs table shows nothing RUNNING that is not.

    Returns:
        The parent run's id, and the names of the dead runs it marked KILLED.
    """
    import mlflow

    experiment_id = tracking.use_experiment(params["tracking_uri"], params["experiment"])
    closed = close_stale(experiment_id)
    ctx = tracking.RunContext(
        run_name=params["run_name"],
        pipeline_run_id="",
        tracking_uri=params["tracking_uri"],
        experiment=params["experiment"],
    )
    tags = {**tracking.parent_tags(ctx), TAG_LOCAL_PROCESS: process_identity(os.getpid())}
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=params["run_name"], tags=tags)
    tracking.log_run_params(run.info.run_id, params)
    return run.info.run_id, closed


def context_env(params: Mapping[str, Any], parent_id: str, server_url: str = "") -> dict[str, str]:
    """The run context every task reads from its environment (see `tracking.run_context`).

    With `server_url` (the run's own tracking server) the tasks track through it, and
    lineage records the store it serves, which outlives the server.
    """
    env = {
        tracking.RUN_NAME_ENV: params["run_name"],
        tracking.TRACKING_URI_ENV: server_url or params["tracking_uri"],
        tracking.EXPERIMENT_ENV: params["experiment"],
        tracking.PARENT_RUN_ID_ENV: parent_id,
    }
    if server_url:
        env[tracking.TRACKING_STORE_ENV] = params["tracking_uri"]
    return env


@contextlib.contextmanager
def exported(env: Mapping[str, str]) -> Iterator[None]:
    """Sets `env` in os.environ (the SubprocessRunner's tasks inherit it), restored after."""
    with environ_kept(env):
        os.environ.update(env)
        yield


@contextlib.contextmanager
def environ_kept(names: Iterable[str]) -> Iterator[None]:
    """The named environment variables are as before the block after it: set, changed or unset."""
    before = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so one cleanup path handles both.

    (KeyboardInterrupt exactly: subprocess.Popen then waits only briefly for the running task.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT too: a process started in the background by a non-interactive shell inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler of its own.
    before = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _children() -> list[int]:
    """This process's direct children (Linux /proc; elsewhere `pgrep -P`)."""
    me = str(os.getpid())
    if Path("/proc").is_dir():
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[1] == me:
                    found.append(int(stat.parent.name))
            except (OSError, IndexError):
                continue
        return found
    done = subprocess.run(["pgrep", "-P", me], capture_output=True, text=True, check=False)
    return [int(p) for p in done.stdout.split()]


def stop_tasks(keep: Iterable[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """Stops the running pipeline task (every child process but the agents in `keep`).

    Signals are ignored meanwhile: cleanup must not be cut short by a second Ctrl-C.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)
    kept = {p.pid for p in keep}
    pids = [pid for pid in _children() if pid not in kept]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # already reaped (by subprocess)
        return False
    return done == 0


def close(params: Mapping[str, Any], parent_id: str, status: str) -> str:
    """Ends the parent and its RUNNING steps as `status`.

    Returns:
        "" or, when the store fails, a line saying so (the run's own error matters more).
    """
    import mlflow

    mlflow.set_tracking_uri(params["tracking_uri"])
    try:
        tracking.close_runs(parent_id, status)
    except Exception as e:
        return f"could not close MLflow run {parent_id}: {tracking.one_line(e)}"
    return ""


def runs_page_url(uri: str, experiment: str, port: int = UI_PORT) -> str:
    """The runs page of `experiment` in the MLflow UI serving `uri` (a store: on `port`)."""
    import mlflow

    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    path = f"/#/experiments/{found.experiment_id}/runs" if found else ""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}{path}"
    return f"http://127.0.0.1:{port}{path}"


def runs_page_hint(params: Mapping[str, Any]) -> str:
    """Where the run's experiment shows its runs: the URL, or how to serve it first."""
    uri = params["tracking_uri"]
    url = runs_page_url(uri, params["experiment"])
    if uri.startswith(("http://", "https://")):
        return url
    return f"make mlflow-ui, then open {url} (tracking {uri})"
