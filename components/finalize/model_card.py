"""The model card: one Markdown page per pipeline run, logged on the parent run by finalize.

Data, model, compression, figures, gate and lineage, from summary.json and the runs' tags and
parameters. Pure: no MLflow here; finalize gathers the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CARD_FILE = "model_card.md"
STAGE_TITLES = {
    "float": "float (Keras)",
    "pruned": "pruned (Keras)",
    "qat": "quantization-aware (Keras)",
    "tflite_float": "float .tflite",
    "tflite_int8": "int8 .tflite (ships)",
}


def model_card(
    summary: Mapping[str, Any],
    params: Mapping[str, str],
    lineage: Mapping[str, str],
    figures: Mapping[str, str] | None = None,
) -> str:
    """The card as Markdown.

    Args:
        summary: summary.json of the run.
        params: the run parameters (the parent run's, with the steps' own added).
        lineage: what the model is traced by (run ids, commit, image, fingerprint, version).
        figures: figure name → URI (e.g. `runs:/<id>/evaluation/confusion_tflite_int8.png`).
    """
    lines = [f"# Model card: {summary.get('run_name') or summary.get('run_id')}", ""]
    lines += [f"Status: **{summary.get('status', '')}**", ""]
    lines += _data(summary.get("dataset") or {}) + _model(summary.get("model") or {})
    lines += _compression(summary.get("stages") or {}, params)
    lines += _figures(figures or {}) + _gate(summary.get("gate") or {}, params)
    lines += _section("Lineage", [f"- {k}: `{v}`" for k, v in lineage.items() if v])
    return "\n".join(lines).rstrip() + "\n"


def _section(title: str, body: list[str]) -> list[str]:
    return [f"## {title}", "", *(body or ["(not recorded: the step did not run)"]), ""]


def _data(data: Mapping[str, Any]) -> list[str]:
    if not data:
        return _section("Data", [])
    classes = data.get("classes") or []
    return _section(
        "Data",
        [
            f"- {len(classes)} classes: {', '.join(map(str, classes))}",
            f"- train / val / test: {data.get('n_train')} / {data.get('n_val')} / {data.get('n_test')}",
            f"- quarantined files: {data.get('n_quarantined')}",
            f"- fingerprint: `{data.get('fingerprint', '')}`",
        ],
    )


def _model(model: Mapping[str, Any]) -> list[str]:
    if not model:
        return _section("Model", [])
    return _section(
        "Model",
        [
            f"- zoo entry: `{model.get('zoo_id')}`",
            f"- parameters: {model.get('params', 0):,}",
            f"- input: {model.get('input_shape')}",
        ],
    )


def _compression(stages: Mapping[str, Any], params: Mapping[str, str]) -> list[str]:
    rows = ["| stage | test accuracy | sparsity | size (B) | gzip (B) | p50 latency (ms) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for stage, title in STAGE_TITLES.items():
        m = stages.get(stage) or {}
        if m:
            rows.append(
                f"| {title} | {_pct(m.get('accuracy'))} | {_pct(m.get('sparsity'))} | "
                f"{_num(m.get('size_bytes'))} | {_num(m.get('gzip_bytes'))} | "
                f"{_num(m.get('latency_ms_p50'), '.3f')} |"
            )
    knobs = [
        f"{k}={params[k]}" for k in ("target_sparsity", "prune_epochs", "qat_epochs") if k in params
    ]
    note = [f"Pruning and int8 quantization-aware training ({', '.join(knobs)})." if knobs else ""]
    return _section("Compression", [*note, "", *rows] if len(rows) > 2 else [])


def _figures(figures: Mapping[str, str]) -> list[str]:
    return _section("Figures", [f"- {name}: `{uri}`" for name, uri in figures.items()])


def _gate(gate: Mapping[str, Any], params: Mapping[str, str]) -> list[str]:
    if not gate:
        return _section("Gate", [])
    body = [
        f"- verdict: **{'BLESSED' if gate.get('blessed') else 'NOT blessed'}**",
        f"- thresholds: min_accuracy={params.get('min_accuracy', '?')}, "
        f"max_drop_points={params.get('max_drop_points', '?')}",
    ]
    if gate.get("model_version"):
        body.append(f"- registered version: {gate['model_version']}")
    return _section("Gate", body + [f"- {reason}" for reason in gate.get("reasons", [])])


def _pct(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else ""


def _num(value: Any, fmt: str = ",") -> str:
    return format(value, fmt) if isinstance(value, int | float) else ""


def log_card(parent: Any, summary: Mapping[str, Any]) -> str:
    """Writes the card from the parent run and its steps, logs it on the parent; returns it."""
    import mlflow

    from edgetune.components.common import tracking
    from edgetune.lineage import TAG_CODE_VERSION, TAG_GIT_COMMIT, TAG_IMAGE

    client = mlflow.MlflowClient()
    steps = tracking.step_runs(parent)
    params = tracking.pipeline_params(parent)
    tags = parent.data.tags
    lineage = {
        "MLflow parent run": parent.info.run_id,
        "pipeline job": tags.get(tracking.TAG_PIPELINE_RUN_ID, ""),
        "git commit": tags.get(TAG_GIT_COMMIT, ""),
        "code version": tags.get(TAG_CODE_VERSION, ""),
        "image": tags.get(TAG_IMAGE, ""),
        "data fingerprint": (summary.get("dataset") or {}).get("fingerprint", ""),
        "parameters sha256": tracking.params_sha256(params),
        "registered model": (
            f"models:/{tracking.REGISTERED_MODEL}/{summary['gate']['model_version']}"
            if (summary.get("gate") or {}).get("model_version")
            else ""
        ),
    }
    figures = {}
    if "evaluate" in steps:
        evaluate_id = steps["evaluate"].info.run_id
        for stage in STAGE_TITLES:
            figures[f"confusion matrix, {stage}"] = (
                f"runs:/{evaluate_id}/evaluation/confusion_{stage}.png"
            )
    card = model_card(summary, params, lineage, figures)
    client.log_text(parent.info.run_id, card, CARD_FILE)
    return card
