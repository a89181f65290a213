"""`make local-run`: the same DAG a cluster runs, on this machine through kfp.local.

Creates the parent MLflow run, starts local agents (the fleet), runs the pipeline with the
SubprocessRunner in this environment (which the tasks inherit: the parent run's id travels
in EDGETUNE_PARENT_RUN_ID), then writes runs/<run>/summary.json and prints it as a table.
Every exit closes the runs: an error FAILED, SIGINT/SIGTERM KILLED (the running task is
stopped too); after a SIGKILL the agents exit on their own and the next local run marks
the dead run KILLED.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgetune import files
from edgetune.agent.local_fleet import LocalFleet, start_local_fleet
from edgetune.components.common import summary, tracking
from edgetune.errors import EdgetuneError
from edgetune.pipelines import local_runs, reuse, tracking_server, versions, warm
from edgetune.pipelines import params as run_params
from edgetune.pipelines.parameters import D
from edgetune.pipelines.tracking_server import TrackingServer

DEMO_DATA = Path("data/digits")
KEY_DIR = Path(".edgetune/keys")
CACHE_DIR = ".kfp_cache"  # beside the run folders: every local run shares it


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """The run's parameters: preset + overrides, coerced and checked, local paths made absolute.

    Everything a run could reject is rejected here, before any agent or MLflow store starts.
    """
    params = run_params.apply_overrides(run_params.load_preset(args.preset), args.overrides)
    params = run_params.check_parameters(params)
    run_params.validate_values(params, local=True, data=False)
    if args.agents == 0:  # otherwise the local agents come with a key made for them
        run_params.require_signing_key(
            params,
            "make one with `edgetune keygen` and --set signing_key=.edgetune/keys/signing.key, "
            "or deploy to local agents (--agents N)",
        )
    data = run_params.local_data_path(str(params["data_uri"]))
    if data is not None and data == DEMO_DATA and not data.exists():
        from edgetune.demo_data import write_demo_digits

        print(f"writing the demo data set to {data} (edgetune demo-data)")
        write_demo_digits(data)
    run_params.check_data_uri(str(params["data_uri"]), local=True)
    if data is not None:  # a second or two on a local source; ingest does the full check
        from edgetune.components.ingest.sources import LabelRules, quick_check

        def given(name: str) -> Any:
            return params.get(name, run_params.DECLARED[name].default)

        rules = LabelRules(fold_case=given("fold_case"), label_map=given("label_map") or {})
        quick_check(str(params["data_uri"]), min_per_class=int(given("min_per_class")), rules=rules)
    params["tracking_uri"] = tracking.resolve_tracking_uri(params.get("tracking_uri", ""))
    params = run_params.resolve_file_params(params)
    return versions.fill(params, when=f"{datetime.now(UTC):%Y%m%dT%H%M%S}")


def run_pipeline(
    params: dict[str, Any],
    out: Path,
    *,
    cache: bool = True,
    tracking_url: str = "",
    zygote: warm.Zygote | None = None,
) -> tuple[float, dict[str, str]]:
    """Runs the DAG through kfp.local; returns its wall time (s) and its cache hits.

    The hits are {step: the earlier run whose outputs it reused}. With `cache`, a step whose inputs (data_version, parameters, code_version, upstream
    outputs) match an earlier run's is not run again: kfp.local hands on that run's outputs
    from the cache beside the runs (runs/.kfp_cache), as long as they still exist. The tasks
    track to `tracking_url` (the local tracking server) when given, else to the store itself.
    With a `zygote`, each task forks from that process, which imported TensorFlow and MLflow
    once (`warm`), instead of starting a fresh interpreter.
    """
    from kfp import local

    from edgetune.pipelines.edgetune_pipeline import edgetune_pipeline

    # kfp.local warns when a base image's name lacks "python"; ours is the edgetune image,
    # and the SubprocessRunner runs the same installed package in this environment.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(out / "kfp"),
        raise_on_error=False,
        enable_caching=cache,
        cache_root=str(out.parent / CACHE_DIR),
    )
    # The tasks (subprocesses) inherit the run's identity; it is not one of the cached steps'
    # inputs, so a new run's unchanged steps hit the cache.
    context = {
        "EDGETUNE_RUN_NAME": params["run_name"],
        "MLFLOW_TRACKING_URI": tracking_url or params["tracking_uri"],
        "MLFLOW_EXPERIMENT_NAME": params.get("experiment") or "edgetune",
    }
    saved = {name: os.environ.get(name) for name in context}
    os.environ.update(context)
    # kfp.local indents each task's logs by swapping builtins.print for the task's duration;
    # two ParallelFor branches in threads interleave the swap and restore, which can leave
    # the indenting print in place for the rest of the process. Put the real one back.
    real_print = builtins.print
    start = time.perf_counter()
    try:
        with reuse.recording_cache_hits() as hits, warm.tasks_from(zygote):
            edgetune_pipeline(**params)
    finally:
        builtins.print = real_print
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return time.perf_counter() - start, hits


def collect_summary(
    params: dict[str, Any],
    parent_id: str,
    wall_seconds: float,
    out: Path,
    cache_hits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """summary.json from the parent MLflow run (finalize wrote it), plus the local wall time.

    The parts of steps taken from the cache come from the runs that made them.
    """
    import mlflow

    experiment_id = tracking.use_experiment(
        params["tracking_uri"], params.get("experiment", "edgetune")
    )
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_id)
    try:
        result = json.loads(
            Path(client.download_artifacts(parent.info.run_id, files.SUMMARY, str(out))).read_text()
        )
    except Exception:  # finalize itself did not run: assemble what the components left
        result = summary.build_summary(experiment_id, parent, status="FAILED")
    if cache_hits:
        result = reuse.fill_from_earlier_runs(result, cache_hits, experiment_id)
    result["wall_seconds"] = round(wall_seconds, 2)
    result["artifacts"] = {
        p.parent.parent.name + "/" + p.parent.name: str(p)
        for p in sorted((out / "kfp").glob("*/*/*/*.tflite"))
    }
    for plot in sorted((out / "kfp").glob(f"*/choose/*/{files.PARETO_PNG}"))[-1:]:
        files.write_bytes(out / files.PARETO_PNG, plot.read_bytes())  # the search's picture
    files.write_json(out / files.SUMMARY, result)
    client.log_artifact(parent.info.run_id, str(out / files.SUMMARY))
    return result


@dataclass
class LocalRun:
    """What a local run leaves: its folder, its summary, and the agents if they were kept."""

    out: Path
    summary: dict[str, Any]
    params: dict[str, Any]
    fleet: LocalFleet | None


def run_local(args: argparse.Namespace) -> LocalRun:
    """Starts the agents, creates the parent run, runs the DAG, collects summary.json.

    The agents are stopped unless kept; on any exception the runs still RUNNING are closed
    (KILLED after SIGINT/SIGTERM, else FAILED) and the exception propagates.
    """
    params = prepare(args)
    run_name = f"local-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"[:-3]
    out = Path(args.out).resolve() / run_name
    out.mkdir(parents=True, exist_ok=False)
    params["run_name"] = run_name
    params.setdefault("experiment", D.experiment)
    fleet = server = None
    parent_id = ""
    # The zygote imports and the agents boot while the parent run is made (MLflow's import).
    warm_tasks = not getattr(args, "cold_tasks", False)
    with local_runs.interruptible(), warm.zygote(warm_tasks) as zygote:
        try:
            fleet = _start_agents(args, params, out)
            parent_id, closed = local_runs.start_parent({**vars(D), **params})
            for name in closed:
                print(f"marked {name} KILLED: its local-run process is gone")
            if getattr(args, "tracking_server", False):  # serves while the agents start
                server = _start_tracking_server(params["tracking_uri"])
            if fleet is not None:
                fleet.wait_up()
                print(f"started {args.agents} local agents: {', '.join(fleet.urls)}")
            url = server.wait() if server else ""
            with local_runs.exported(local_runs.context_env(params, parent_id, url)):
                wall, hits = run_pipeline(
                    params,
                    out,
                    cache=not getattr(args, "no_cache", False),
                    tracking_url=url,
                    zygote=zygote,
                )
            result = collect_summary(params, parent_id, wall, out, hits)
        except BaseException as e:
            local_runs.stop_tasks(fleet.processes if fleet else [])
            status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
            if parent_id and (problem := local_runs.close(params, parent_id, status)):
                print(problem)
            if fleet is not None:
                fleet.stop()
            raise
        finally:
            if server is not None:
                server.stop()
    if fleet is not None and not args.keep_agents:
        fleet.stop()
        fleet = None
    return LocalRun(out=out, summary=result, params=params, fleet=fleet)


def _start_tracking_server(store_uri: str) -> TrackingServer | None:
    """The run's tracking server over a SQLite store (tasks talk to it, as pods would)."""
    if not tracking_server.serves_locally(store_uri):
        return None  # already a server, which the tasks use directly
    return TrackingServer(store_uri).start()


def _start_agents(args: argparse.Namespace, params: dict[str, Any], out: Path) -> LocalFleet | None:
    if args.agents <= 0:
        return None
    from edgetune.signing import generate_keypair

    private, public = generate_keypair(KEY_DIR)
    fleet = start_local_fleet(args.agents, out / "agents", public, wait=False)  # see wait_up
    params.setdefault("fleet_file", str(fleet.fleet_file))
    params.setdefault("signing_key", str(private.resolve()))
    return fleet


def main(args: argparse.Namespace) -> int:
    """`edgetune local-run`: runs the pipeline here and prints its summary table; 0 on success."""
    run = run_local(args)
    print("\n" + summary.format_table(run.summary))
    print(f"\nsummary: {run.out / files.SUMMARY}\nMLflow:  {local_runs.runs_page_hint(run.params)}")
    if run.fleet is not None:
        print(
            f"agents still running: {', '.join(run.fleet.urls)} (fleet file {run.fleet.fleet_file})"
        )
    if run.summary.get("status") != "SUCCEEDED":
        errors = run.summary.get("errors") or {}
        where, error = next(iter(errors.items()), ("pipeline", "failed"))
        raise EdgetuneError(f"run {run.params['run_name']} failed in {where}: {error}")
    return 0
