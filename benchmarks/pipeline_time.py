"""Pipeline time: one default local run, each component's work, and the fixed cost per task.

    .venv/bin/python -m benchmarks.pipeline_time [--repeats 5] [--out r.json]

Runs `make local-run`'s code in-process (kfp.local SubprocessRunner, three local agents) on
the default preset, from a scratch working directory, and reads `component_seconds` (each
component's MLflow run, from the start of its work to its end) and the pipeline wall time.
Then measures, interleaved and repeated: a fresh interpreter that only imports what a
component imports; a bare interpreter; one trivial lightweight component run through
kfp.local; and the same trivial component opening and closing an edgetune MLflow component
run on the run's SQLite store (an edgetune wrapper with no work). Fixed cost = wall - the
work on the path (the search's branches run side by side: the longest counts), compared with
the tasks x those per-task costs. Then the run again as a user types it (a fresh
`edgetune local-run` process on the same folder and store): unchanged, the whole command's
wall when every cacheable step comes from kfp.local's cache; then with only the search's
sparsity changed, which steps run again.

Not a `from __future__ import annotations` module: kfp reads the component annotations.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kfp import dsl

from benchmarks.common import Progress, default_preset, emit, median, timed
from edgetune.images import COMPONENT_IMAGE
from edgetune.pipelines import warm

# Modules a heavy component process ends up importing, timed one after the other.
IMPORTS = ("edgetune", "mlflow", "tensorflow", "tf_keras", "tensorflow_model_optimization")
_IMPORT_PROBE = """
import json, sys, time
t = {}
for name in sys.argv[1:]:
    s = time.perf_counter(); __import__(name); t[name] = time.perf_counter() - s
print(json.dumps(t))
"""
# The one parameter the second rerun changes: the search's sparsity (the default is [0.5]).
CHANGED_SPARSITY = "[0.6]"
# Components whose work (inside their MLflow run) imports TensorFlow on first use.
TF_COMPONENTS = ("preprocess", "fine_tune", "search_space", "candidate", "convert", "evaluate")


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def noop(x: int) -> int:
    """A trivial lightweight component: what kfp.local costs per task, with no work."""
    return x


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def tracked_noop(run_name: str, tracking_uri: str) -> int:
    """An edgetune wrapper with no work: imports mlflow, opens and closes a component run."""
    import mlflow  # noqa: F401 - every wrapper imports it before its run starts

    from edgetune.components.common import tracking

    with tracking.component_run("noop", run_name=run_name, tracking_uri=tracking_uri):
        pass
    return 1


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """run_local writes its signing keys under ./.edgetune: keep them out of the repository."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def default_local_run(work: Path, log: Progress) -> tuple[dict[str, Any], float]:
    """The default preset through the local runner; its summary and the call's wall seconds."""
    import argparse as ap

    from edgetune.pipelines.local_run import run_local

    args = ap.Namespace(
        preset="default",
        overrides=[
            f"tracking_uri=sqlite:///{work / 'mlflow.db'}",
            f"data_uri={default_preset()['data_uri']}",
        ],
        out=str(work / "runs"),
        agents=3,
        keep_agents=False,
    )
    with working_directory(work):
        run, seconds = timed(run_local, args)
    log(f"local run {run.summary.get('status')} in {seconds:.0f} s")
    return run.summary, seconds


def cached_rerun(work: Path, log: Progress, *changed: str) -> dict[str, Any]:
    """The same default run again, as a user types it: the whole command's wall.

    A fresh `edgetune local-run` process in the same folder (so kfp.local's cache beside the
    runs and the MLflow store are the first run's). Unchanged (no `changed` overrides), every
    step but choose, deploy and finalize comes from the cache; with `changed` (e.g.
    `search_sparsity=[0.6]`), the steps before the changed parameter's first reader do.
    Returns its command wall, pipeline wall, status, and the steps cached and run.
    """
    overrides = [f"tracking_uri=sqlite:///{work / 'mlflow.db'}",
                 f"data_uri={default_preset()['data_uri']}", *changed]  # fmt: skip
    command = [sys.executable, "-m", "edgetune.cli", "local-run", "--out", str(work / "runs")]
    command += [arg for o in overrides for arg in ("--set", o)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    newest = max((work / "runs").glob("local-*/summary.json"), key=lambda p: p.stat().st_mtime)
    summary = json.loads(newest.read_text())
    what = f"rerun with {' '.join(changed)}" if changed else "unchanged rerun"
    log(f"{what}: {summary.get('status')} in {seconds:.1f} s (exit {done.returncode})")
    return {
        "changed": list(changed),
        "command_seconds": seconds,
        "pipeline_wall_seconds": summary.get("wall_seconds"),
        "status": summary.get("status"),
        "exit_code": done.returncode,
        "cached": sorted(summary.get("cached") or {}),
        "ran": sorted(summary.get("component_seconds") or {}),
    }


def import_probe() -> tuple[float, dict[str, float]]:
    """Wall seconds of a fresh interpreter importing IMPORTS, and each import's share."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *IMPORTS],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return time.perf_counter() - start, json.loads(out.strip().splitlines()[-1])


def bare_interpreter() -> float:
    """Wall seconds of starting a Python interpreter that does nothing."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def kfp_task(root: Path, component: Any, **arguments: Any) -> float:
    """Wall seconds of one task of `component` through kfp.local's SubprocessRunner."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    start = time.perf_counter()
    task = component(**arguments)
    seconds = time.perf_counter() - start
    if task.output != 1:
        raise RuntimeError(f"{component.name} returned {task.output!r}")
    return seconds


def fixed_cost_probes(work: Path, repeats: int, log: Progress) -> dict[str, Any]:
    """The per-task fixed costs, each measured `repeats` times interleaved, with their medians.

    The probes: an interpreter importing what a component imports, a bare interpreter, a
    trivial kfp.local task, and the same task opening and closing an MLflow component run;
    the last two also warm, forked from local-run's zygote (`warm`), whose start-up (import
    everything once) is measured too.
    """
    walls: dict[str, list[float]] = {
        "import": [], "bare": [], "kfp_task": [], "tracked": [], "kfp_task_warm": [],
        "tracked_warm": [],
    }  # fmt: skip
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"  # the local run's store, already set up
    parts: dict[str, list[float]] = {name: [] for name in IMPORTS}
    zygote, zygote_seconds = timed(lambda: _ready(warm.Zygote()))
    try:
        for r in range(repeats):
            _probe_round(r, work, tracking_uri, zygote, walls, parts)
            log(
                f"probe {r + 1}/{repeats}: imports {walls['import'][-1]:.1f} s, bare "
                f"{walls['bare'][-1]:.2f} s, kfp noop task {walls['kfp_task'][-1]:.2f} s "
                f"(warm {walls['kfp_task_warm'][-1]:.2f} s), tracked noop task "
                f"{walls['tracked'][-1]:.1f} s (warm {walls['tracked_warm'][-1]:.2f} s)"
            )
    finally:
        zygote.stop()
    return {
        "repeats": repeats,
        "import_process_seconds": median(walls["import"]),
        "bare_interpreter_seconds": median(walls["bare"]),
        "kfp_noop_task_seconds": median(walls["kfp_task"]),
        "tracked_noop_task_seconds": median(walls["tracked"]),
        "warm_kfp_noop_task_seconds": median(walls["kfp_task_warm"]),
        "warm_tracked_noop_task_seconds": median(walls["tracked_warm"]),
        "zygote_ready_seconds": zygote_seconds,
        "import_seconds": {name: median(v) for name, v in parts.items()},
        "all": {k: [round(x, 3) for x in v] for k, v in walls.items()},
    }


def _ready(zygote: warm.Zygote) -> warm.Zygote:
    if not zygote.wait_ready():
        zygote.stop()
        raise RuntimeError("the warm zygote did not start")
    return zygote


def _probe_round(
    r: int,
    work: Path,
    tracking_uri: str,
    zygote: warm.Zygote,
    walls: dict[str, list[float]],
    parts: dict[str, list[float]],
) -> None:
    """One round of every probe, cold then warm."""
    wall, each = import_probe()
    walls["import"].append(wall)
    for name, seconds in each.items():
        parts[name].append(seconds)
    walls["bare"].append(bare_interpreter())
    walls["kfp_task"].append(kfp_task(work / "noop", noop, x=1))
    walls["tracked"].append(
        kfp_task(work / "noop", tracked_noop, run_name=f"bench-noop-{r}",
                 tracking_uri=tracking_uri)
    )  # fmt: skip
    with warm.tasks_from(zygote):
        walls["kfp_task_warm"].append(kfp_task(work / "noop", noop, x=1))
        walls["tracked_warm"].append(
            kfp_task(work / "noop", tracked_noop, run_name=f"bench-noop-warm-{r}",
                     tracking_uri=tracking_uri)
        )  # fmt: skip


def run(work: Path, *, repeats: int = 5) -> dict[str, Any]:
    """One default local run and the fixed-cost probes; returns work, fixed cost and estimates."""
    log = Progress("pipeline_time")
    log("default local run (kfp.local, 3 agents)")
    summary, call_seconds = default_local_run(work, log)
    rerun = cached_rerun(work, log)
    changed = cached_rerun(work, log, f"search_sparsity={CHANGED_SPARSITY}")
    probes = fixed_cost_probes(work, repeats, log)
    work_seconds = summary.get("component_seconds") or {}
    wall = summary.get("wall_seconds") or call_seconds
    tasks = len(work_seconds) + 1  # + finalize, whose own seconds summary.json does not hold
    imports = probes["import_seconds"]
    tf_import = sum(imports[n] for n in ("tensorflow", "tf_keras", "tensorflow_model_optimization"))
    # The branches run side by side (2 at a time here): the longest one is on the path.
    branches = [v for k, v in work_seconds.items() if k.startswith("candidate:")]
    path_work = sum(work_seconds.values()) - sum(branches) + max(branches, default=0.0)
    fixed = wall - path_work
    stages = summary.get("stages") or {}
    log("done")
    return {
        "status": summary.get("status"),
        "errors": summary.get("errors"),
        "blessed": (summary.get("gate") or {}).get("blessed"),
        "int8_accuracy": (stages.get("tflite_int8") or {}).get("accuracy"),
        "component_seconds": work_seconds,
        "work_seconds_total": sum(work_seconds.values()),
        "work_seconds_on_path": path_work,
        "pipeline_wall_seconds": wall,
        "run_local_call_seconds": call_seconds,
        "cached_rerun": rerun,
        "changed_sparsity_rerun": changed,
        "tasks": tasks,
        "fixed_seconds": fixed,
        "fixed_share": fixed / wall if wall else None,
        "probes": probes,
        "estimates": {
            # What a task pays outside its work: kfp.local, the interpreter, importing mlflow,
            # opening and closing the MLflow run on the SQLite store.
            "tasks_x_tracked_noop_task": tasks * probes["tracked_noop_task_seconds"],
            "tasks_x_kfp_noop_task": tasks * probes["kfp_noop_task_seconds"],
            "tasks_x_import_process": tasks * probes["import_process_seconds"],
            # Counted inside "work": TensorFlow is imported lazily, within the MLflow run.
            "tf_import_seconds": tf_import,
            "tf_import_inside_work_seconds": len(TF_COMPONENTS) * tf_import,
            "tf_components": list(TF_COMPONENTS),
        },
    }


def main() -> None:
    """Command line: runs the pipeline-time benchmark in a scratch folder and emits the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        emit(run(Path(tmp), repeats=args.repeats), args.out)


if __name__ == "__main__":
    main()
