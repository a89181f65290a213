"""The fixed MLflow cost of one pipeline task: a SQLite file opened by each task, or a server.

    .venv/bin/python -m benchmarks.tracking_store [--tasks 6] [--out r.json]

Each task is a fresh interpreter that does what an edgetune wrapper does around its work:
imports edgetune and mlflow, opens a component run under an existing parent run (its id in
EDGETUNE_PARENT_RUN_ID, as `edgetune local-run` passes it), logs one parameter, one metric
and one small artifact, and closes the run. Measured against (a) sqlite:///mlflow.db, which
every task opens itself, and (b) `mlflow server` on loopback over the same kind of store,
started once (its start-up is reported apart). Tasks alternate between the two, so load on
the machine hits both alike. Reports each task's wall time (median) and, inside it, the time
from opening the run to closing it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TASK = """
import json, sys, time
t0 = time.perf_counter()
import mlflow
from edgetune.components.common import tracking
t1 = time.perf_counter()
with tracking.component_run("noop", run_name="bench"):
    mlflow.log_param("x", 1)
    mlflow.log_metric("y", 1.0)
    mlflow.log_dict({"a": 1}, "part.json")
t2 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "run": t2 - t1}))
"""


def free_port() -> int:
    """A free loopback port (the server binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str, float]:
    """Starts `mlflow server` on loopback; its process, URL and start-up seconds."""
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "server-artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - start < 120:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


def parent_env(uri: str) -> dict[str, str]:
    """Creates a parent run in store `uri`; the environment a task then runs in."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(
        [sys.executable, "-c",
         "import mlflow; from edgetune.components.common import tracking as t;"
         "e = t.use_experiment('', 'edgetune');"
         "print(mlflow.MlflowClient().create_run(e, run_name='bench', tags={t.TAG_RUN_NAME: 'bench', t.TAG_COMPONENT: 'pipeline'}).info.run_id)"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {**env, "EDGETUNE_PARENT_RUN_ID": done.stdout.strip().splitlines()[-1]}


def task(env: dict[str, str]) -> dict[str, float]:
    """One task in a fresh interpreter: wall, import and run seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", TASK], env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return {"wall": time.perf_counter() - start, **json.loads(done.stdout.strip().splitlines()[-1])}


def median(xs: list[float]) -> float:
    """The median of `xs`."""
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def run(tasks: int) -> dict:
    """`tasks` tasks against each store, alternating; the medians and the server start-up."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server, url, startup = start_server(root)
        try:
            envs = {
                "sqlite": parent_env(f"sqlite:///{root / 'mlflow.db'}"),
                "server": parent_env(url),
            }
            samples: dict[str, list[dict[str, float]]] = {k: [] for k in envs}
            for _ in range(tasks):
                for kind, env in envs.items():
                    samples[kind].append(task(env))
        finally:
            server.terminate()
            server.wait(30)
    return {
        "tasks_each": tasks,
        "server_startup_s": round(startup, 2),
        **{
            kind: {
                key: round(median([s[key] for s in runs]), 3) for key in ("wall", "imports", "run")
            }
            for kind, runs in samples.items()
        },
    }


def main() -> None:
    """Command line: prints the result (and writes it to --out)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    result = run(args.tasks)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
