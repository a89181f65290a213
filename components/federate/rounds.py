"""Federated rounds end to end: collect, average, gate, sign, roll out; one MLflow run each.

What `edgetune fleet federate` and the federate pipeline's component run. The rollout is
deploy's own (`components.deploy.core.rollout`): the same waves, compare-and-swap pushes,
smoke tests and rollbacks as a pipeline release.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from edgetune import files
from edgetune.bundle import VerifiedBundle, open_bundle
from edgetune.components.federate.core import FederateConfig, federate_round, write_report
from edgetune.components.federate.release import federated_bundle, round_of
from edgetune.errors import EdgetuneError
from edgetune.fleet import load_fleet, select

log = logging.getLogger(__name__)


def run_rounds(
    bundle_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    fleet_file: str | os.PathLike,
    trusted_key: str | os.PathLike,
    signing_key: str,
    out_dir: str | os.PathLike,
    config: FederateConfig,
    *,
    rounds: int = 1,
    tags: str = "",
    run_name: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
) -> list[dict[str, Any]]:
    """Runs up to `rounds` federated rounds from the bundle the fleet serves.

    A round that stops (too few devices) or is not blessed ends the loop; a blessed round's
    bundle is rolled out and is the next round's base. Each round writes
    `round-<n>/round_report.json` (and its bundle) under `out_dir` and, with a run name, is
    an MLflow run nested in that parent.

    Returns:
        One dict per round: the round's report, plus `bundle` and `rollout` when shipped.

    Raises:
        EdgetuneError: bad arguments, a bundle without a split model, or a rollout that
            did not reach every device.
    """
    from edgetune.components.common import training

    if rounds < 1:
        raise EdgetuneError(f"rounds={rounds}; must be >= 1")
    try:
        x_test, y_test = training.load_split(data_dir, "test")
    except OSError as e:
        raise EdgetuneError(
            f"{data_dir}: no test split to judge the rounds ({e.strerror or e}); "
            "expected preprocess's output folder"
        ) from None
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    devices = select(load_fleet(fleet_file), wanted)
    base = open_bundle(bundle_path, trusted_key)
    results: list[dict[str, Any]] = []
    try:
        _loop(results, rounds, base, devices, x_test, y_test, config, Path(out_dir), signing_key,
              trusted_key, (run_name, tracking_uri, experiment))  # fmt: skip
    except BaseException:
        _close_parent(run_name, tracking_uri, experiment, "FAILED")
        raise
    _close_parent(run_name, tracking_uri, experiment, "FINISHED")
    return results


def _loop(results, rounds, base, devices, x_test, y_test, config, out_dir, signing_key,
          trusted_key, tracked) -> None:  # fmt: skip
    """The rounds, appended to `results` as they finish (kept when a later one fails)."""
    run_name, tracking_uri, experiment = tracked
    for _ in range(rounds):
        number = round_of(base) + 1
        work = functools.partial(_one_round, base, devices, x_test, y_test, config,
                                 out_dir / f"round-{number}", signing_key)  # fmt: skip
        result = _tracked(number, run_name, tracking_uri, experiment, work)
        results.append(result)
        if "bundle" not in result:
            break
        base = open_bundle(result["bundle"], trusted_key)


def _close_parent(run_name: str, tracking_uri: str, experiment: str, status: str) -> None:
    """Ends the rounds' parent MLflow run (nothing without a run name)."""
    if not run_name:
        return
    import mlflow

    from edgetune.components.common import tracking

    ctx = tracking.run_context(run_name, "", tracking_uri, experiment)
    parent = tracking.parent_run(tracking.use_experiment(ctx.tracking_uri, ctx.experiment), ctx)
    mlflow.MlflowClient().set_terminated(parent.info.run_id, status)


def _one_round(
    base: VerifiedBundle, devices, x_test, y_test, config, out: Path, key: str
) -> dict[str, Any]:
    from edgetune.components.deploy.core import rollout

    report, head = federate_round(base, devices, x_test, y_test, config)
    write_report(report, files.artifact_dir(out) / "round_report.json")
    result: dict[str, Any] = {"round": report.to_dict(), "metrics": report.metrics()}
    if head is None:
        why = report.stopped or "; ".join(r for r in report.gate["reasons"] if r.startswith("FAIL"))
        log.warning("federated round on %s: not shipped (%s)", base.version, why)
        return result
    metrics = {"accuracy": report.accuracy_after, "devices": len(report.updates),
               "samples": result["metrics"]["samples"]}  # fmt: skip
    bundle_path = federated_bundle(base, head, out, private_key=key, metrics=metrics)
    shipped = rollout(bundle_path, devices, signing_key=key, timeout_s=config.timeout_s)
    result.update(bundle=str(bundle_path), rollout=shipped.to_dict())
    result["metrics"]["rollout_succeeded"] = shipped.succeeded
    shipped.check()
    return result


def _tracked(
    number: int, run_name: str, tracking_uri: str, experiment: str, work
) -> dict[str, Any]:
    """`work()` inside an MLflow run `federate-round-<n>` when a run name is given."""
    if not run_name:
        return work()
    import mlflow

    from edgetune.components.common import tracking

    with tracking.component_run(f"federate-round-{number}", run_name, "", tracking_uri, experiment):
        result = work()
        mlflow.log_metrics({k: float(v) for k, v in result["metrics"].items()})
        mlflow.log_dict(result["round"], "round_report.json")
        if "bundle" in result:
            mlflow.log_artifact(result["bundle"], "bundle")
        return result
