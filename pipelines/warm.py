"""Warm task interpreters for local runs: a fork server, like gunicorn --preload.

kfp.local's SubprocessRunner starts every task as a fresh `python -m kfp.dsl.executor_main`,
which spends seconds importing TensorFlow, tfmot and MLflow before its first line of work.
`zygote()` starts one server process (`warm_server`) that imports all of that once, without
running a TensorFlow op (no eager context, no Python thread); `tasks_from()` then points
sys.executable, which kfp.local uses as the task interpreter, at a shim (`warm_shim`). The
shim hands each task's argv, cwd, environment and stdio to the zygote, which forks; the child
runs the command as the interpreter would have. Results are the same: the child starts from
the same imports with the task's own environment, and the shim runs the real interpreter
whenever the environment differs where an import reads it.

Not copied by a fork, and so not shared with the tasks: Python threads (there are none),
TensorFlow's op thread pools (made with its eager context, which the zygote never creates).
Native threads do exist after the imports, each fork-aware: OpenBLAS's pools (numpy, scipy;
shut down before a fork, re-made on use) and pyarrow's jemalloc background thread (a forked
child runs without it).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Variables read at import time (by Python, TensorFlow, Keras, BLAS, MLflow, kfp): a task
# whose values differ from the zygote's runs cold.
IMPORT_ENV_PREFIXES = (
    "TF_", "KERAS_", "PYTHON", "CUDA_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "XLA_", "LD_",
    "MLFLOW_", "GRPC_", "ABSL_", "_KFP_", "LC_", "LANG", "TMPDIR",
)  # fmt: skip
# ...except these, which MLflow reads when called (checked by a test): local-run sets them
# for the tasks after the zygote has started (the parent run's experiment: mlflow.set_experiment).
CALL_TIME_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")
# What the tasks import, in two stages. The light one first: a zygote with it serves the
# tasks that need no TensorFlow (LIGHT_TASKS) a few seconds after it starts, while a second
# zygote, forked from it, imports TensorFlow for the others.
LIGHT_PRELOAD = (
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.db.utils",
    "sqlalchemy.dialects.sqlite",
    # executor_main's imports, not itself: the task runs it as __main__ (runpy warns when a
    # module it runs is already imported).
    "kfp.dsl.executor",
    "kfp.dsl.kfp_config",
    "kfp.dsl.utils",
)
HEAVY_PRELOAD = ("tensorflow", "tf_keras", "tensorflow_model_optimization")
# The components whose work imports no TensorFlow: they take the light zygote, so a rerun
# (choose, deploy, finalize) and the first tasks never wait for TensorFlow's import. One that
# does import it there is still right, only slower.
LIGHT_TASKS = ("ingest", "select_model", "choose", "deploy", "finalize")
TASK_ENV = {"_KFP_RUNTIME": "true"}  # what kfp's command sets for the executor (kfp reads it)


def preload(modules: tuple[str, ...] = ()) -> None:
    """Imports `modules`, by default LIGHT_PRELOAD, then the components' (light, all of them).

    Not the components' KFP wrappers: they need kfp's compile-time half, which a task's
    runtime (_KFP_RUNTIME=true) does not load.
    """
    for name in modules or LIGHT_PRELOAD:
        importlib.import_module(name)
    if modules:
        return
    import edgetune.components as components

    for info in pkgutil.walk_packages(components.__path__, components.__name__ + "."):
        if not info.name.endswith(".component"):
            importlib.import_module(info.name)


def fork_safe_problem() -> str:
    """Why forking now would be unsafe, or "" when it is safe.

    Unsafe: a Python thread, or TensorFlow's eager context (it owns the op thread pools, which
    a fork would not copy).
    """
    import threading

    if threading.active_count() != 1:
        return f"{threading.active_count()} Python threads: {threading.enumerate()}"
    tf_context = sys.modules.get("tensorflow.python.eager.context")
    if tf_context is not None and tf_context.context_safe() is not None:
        return "TensorFlow's eager context exists"
    return ""


class Zygote:
    """The server process and its private folder (mode 0700: the socket, the shim, a log)."""

    def __init__(
        self, env: dict[str, str] | None = None, preload: tuple[str, ...] | None = None
    ) -> None:
        """Starts the zygote with `env` (default: os.environ) and the tasks' own variables.

        `preload` names the modules one zygote imports instead of the two stages'.
        """
        self.home = Path(tempfile.mkdtemp(prefix="edgetune-warm-"))  # mkdtemp: mode 0700
        self.env = {**(os.environ if env is None else env), **TASK_ENV}
        self.python = sys.executable
        self.shim = self.home / "python3"
        log = (self.home / "zygote.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    "edgetune.pipelines.warm_server",
                    str(self.home),
                    str(os.getpid()),
                    *(preload or ()),
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._write_shim()

    def _write_shim(self) -> None:
        config = {
            "python": self.python,
            "zygote_pid": self.process.pid,
            "import_env_prefixes": IMPORT_ENV_PREFIXES,
            "call_time_env": CALL_TIME_ENV,
            "light_tasks": LIGHT_TASKS,
            "import_env": {
                k: v
                for k, v in self.env.items()
                if k.startswith(IMPORT_ENV_PREFIXES) and k not in CALL_TIME_ENV
            },
        }
        (self.home / "config.json").write_text(json.dumps(config))
        source = (Path(__file__).parent / "warm_shim.py").read_text()
        self.shim.write_text(f"#!{self.python} -IS\n{source}")
        self.shim.chmod(0o700)

    def wait_ready(self, timeout_s: float = 300.0, marker: str = "ready") -> bool:
        """Waits until the zygote accepts every task; False if it died or took too long.

        `marker` "ready-light": until it accepts the tasks that need no TensorFlow.
        """
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            if (self.home / marker).exists():
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the zygote (it stops its running tasks first) and removes its folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def zygote(enabled: bool = True) -> Iterator[Zygote | None]:
    """The zygote (Linux only; None when not `enabled`) for the block, stopped on every exit.

    Start it early: it imports while the run starts its agents. Should this process be
    SIGKILLed, the zygote notices its parent is gone and exits too.
    """
    if not enabled or not sys.platform.startswith("linux"):
        yield None
        return
    started = Zygote()
    try:
        yield started
    finally:
        started.stop()


@contextlib.contextmanager
def tasks_from(started: Zygote | None) -> Iterator[None]:
    """Within it, kfp.local's SubprocessRunner starts its tasks through `started`'s shim.

    kfp.local reads sys.executable as each task starts; nothing else should start then.
    """
    if started is None:
        yield
        return
    real = sys.executable
    sys.executable = str(started.shim)
    try:
        yield
    finally:
        sys.executable = real


@contextlib.contextmanager
def warm_tasks(enabled: bool = True) -> Iterator[Zygote | None]:
    """`zygote` and `tasks_from` it in one block."""
    with zygote(enabled) as started, tasks_from(started):
        yield started
