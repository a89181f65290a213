"""summary.json: one file per pipeline run, assembled from what each component logged.

Each component logs its share (`summary_part.json`) in its nested MLflow run; the finalize
step merges them in DAG order, adds timings from the runs themselves, and logs the result
to the parent run. The keys below are a contract: add more, never rename.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from edgetune.components.common import crash, tracking

COMPONENTS = (
    "ingest",
    "select_model",
    "preprocess",
    "fine_tune",
    "search_space",
    "choose",
    "convert",
    "evaluate",
    "deploy",
)
STAGES = ("float", "pruned", "qat", "tflite_float", "tflite_int8")
TOP_KEYS = (
    "run_id",
    "mlflow_run_id",
    "status",
    "wall_seconds",
    "component_seconds",
    "dataset",
    "model",
    "stages",
    "gate",
    "deploy",
    "candidates",
    "chosen",
)


def deep_merge(into: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Merges `part` into `into` in place, nested dicts key by key; returns `into`."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def child_runs(experiment_id: str, parent_run_id: str) -> list[Any]:
    """The component runs nested under `parent_run_id`, oldest first."""
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )
    return sorted(runs, key=lambda r: r.info.start_time)


def build_summary(experiment_id: str, parent: Any, status: str = "") -> dict[str, Any]:
    """Merges the components' parts under the parent run into one summary dict."""
    import mlflow

    client = mlflow.MlflowClient()
    summary: dict[str, Any] = {
        "run_id": parent.data.tags.get(tracking.TAG_PIPELINE_RUN_ID) or parent.info.run_name,
        "run_name": parent.info.run_name,
        "mlflow_run_id": parent.info.run_id,
        "status": status,
        "wall_seconds": None,
        "component_seconds": {},
        "dataset": {},
        "model": {},
        "stages": {stage: {} for stage in STAGES},
        "gate": {},
        "deploy": {},
        "candidates": [],
        "chosen": None,
        "errors": {},
    }
    children = child_runs(experiment_id, parent.info.run_id)
    last_end = parent.info.start_time
    for run in children:
        name = run.data.tags.get(tracking.TAG_COMPONENT, run.info.run_name)
        end = run.info.end_time or int(time.time() * 1000)
        summary["component_seconds"][name] = round((end - run.info.start_time) / 1000.0, 2)
        last_end = max(last_end, end)
        if tracking.TAG_ERROR in run.data.tags:
            summary["errors"][name] = run.data.tags[tracking.TAG_ERROR]
        elif name != "finalize" and (died := crash.death_reason(run)):
            summary["errors"][name] = died
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = client.download_artifacts(run.info.run_id, tracking.SUMMARY_PART, tmp)
            except Exception:  # a component that failed before logging its part
                continue
            deep_merge(summary, json.loads(Path(local).read_text()))
    summary["wall_seconds"] = round((last_end - parent.info.start_time) / 1000.0, 2)
    return summary


def headline_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers a pipeline run is compared by, named as evaluate names them.

    `<stage>_<key>` for every stage's accuracy, sparsity, sizes and latency, and `blessed`.
    """
    metrics = {
        f"{stage}_{key}": float(value)
        for stage, values in (summary.get("stages") or {}).items()
        for key, value in (values or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    gate = summary.get("gate") or {}
    if "blessed" in gate:
        metrics["blessed"] = float(bool(gate["blessed"]))
    for key in ("succeeded", "failed", "rolled_back"):
        value = (summary.get("deploy") or {}).get(key)
        if isinstance(value, int):
            metrics[f"deploy_{key}"] = float(value)
    return metrics


def log_on_parent(parent_run_id: str, summary: dict[str, Any]) -> None:
    """Logs summary.json and the headline metrics on the parent run."""
    import mlflow
    from mlflow.entities import Metric

    from edgetune import files

    client = mlflow.MlflowClient()
    client.log_dict(parent_run_id, summary, files.SUMMARY)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in headline_metrics(summary).items()]
    if metrics:
        client.log_batch(parent_run_id, metrics=metrics)


def format_table(summary: dict[str, Any]) -> str:
    """The summary as aligned plain-text rows, for a terminal or a log."""
    rows: list[tuple[str, str]] = [
        ("run", f"{summary.get('run_name', '')}  status={summary.get('status', '')}"),
        ("mlflow run", str(summary.get("mlflow_run_id", ""))),
        ("wall time", f"{summary.get('wall_seconds') or 0:.1f} s"),
    ]
    data = summary.get("dataset") or {}
    if data:
        rows.append(
            (
                "dataset",
                f"{len(data.get('classes', []))} classes, train/val/test {data.get('n_train')}/{data.get('n_val')}/"
                f"{data.get('n_test')}, quarantined {data.get('n_quarantined')}, fingerprint {str(data.get('fingerprint', ''))[:12]}",
            )
        )
    model = summary.get("model") or {}
    if model:
        rows.append(
            (
                "model",
                f"{model.get('zoo_id')}  {model.get('params', 0):,} params  input {model.get('input_shape')}",
            )
        )
    for stage in STAGES:
        metrics = (summary.get("stages") or {}).get(stage) or {}
        if metrics:
            rows.append((f"  {stage}", _stage_line(metrics)))
    gate = summary.get("gate") or {}
    if gate:
        rows.append(("gate", "BLESSED" if gate.get("blessed") else "NOT blessed"))
        rows.extend(("", reason) for reason in gate.get("reasons", []))
    deploy = summary.get("deploy") or {}
    if deploy:
        rows.append(("deploy", _deploy_line(deploy)))
    for name, seconds in (summary.get("component_seconds") or {}).items():
        rows.append((f"  {name}", f"{seconds:.1f} s"))
    for name, earlier in (summary.get("cached") or {}).items():
        rows.append((f"  {name}", f"cached: unchanged since run {earlier}"))
    for name, error in (summary.get("errors") or {}).items():
        rows.append((f"error in {name}", error))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _stage_line(metrics: dict[str, Any]) -> str:
    parts = [f"accuracy {metrics['accuracy']:.2%}"] if "accuracy" in metrics else []
    if "sparsity" in metrics:
        parts.append(f"sparsity {metrics['sparsity']:.1%}")
    if "size_bytes" in metrics:
        parts.append(f"{metrics['size_bytes']:,} B (gzip {metrics.get('gzip_bytes', 0):,} B)")
    if "latency_ms_p50" in metrics:
        parts.append(f"p50 {metrics['latency_ms_p50']:.3f} ms")
    if "arena_bytes" in metrics:
        parts.append(f"arena {metrics['arena_bytes']:,} B")
    if metrics.get("mode", "qat") != "qat":
        parts.append(f"{metrics['mode']} ({metrics.get('fallback_reason') or 'some layers float'})")
    return ", ".join(parts)


def _deploy_line(deploy: dict[str, Any]) -> str:
    """Which way the release went (push or pull) and what it reached or published."""
    channel = deploy.get("channel") or {}
    if deploy.get("mode") == "pull" and channel:
        return (
            f"pull: published {deploy.get('version')} (sequence {deploy.get('sequence')}, "
            f"{channel.get('size', 0):,} bytes) to {channel.get('uri')}; devices report under "
            "its status/ (edgetune fleet status)"
        )
    stopped = f"; stopped at {deploy['stopped']}" if deploy.get("stopped") else ""
    return (
        f"push: version {deploy.get('version')}: {deploy.get('succeeded')} ok, "
        f"{deploy.get('failed')} failed, {deploy.get('rolled_back')} rolled back{stopped}"
    )
