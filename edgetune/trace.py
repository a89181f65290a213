"""`edgetune trace`: from a device's model (or a bundle file) back to its data, code and parameters.

A bundle's signed manifest names its origin (`lineage`); MLflow holds the rest. From a
device URL, the model's sha256 (its /health) finds the deploy run that shipped it, whose
bundle artifact carries the manifest. Each link is checked against MLflow where it can be:
the parameters' hash is recomputed from the runs, the data fingerprint compared with the
parent run's dataset input.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from edgetune.errors import EdgetuneError
from edgetune.manifest import MODEL_FILE, Manifest

TAG_MODEL_SHA256 = "edgetune.model_sha256"  # set on the deploy run, found from a device
TAG_BUNDLE_VERSION = "edgetune.bundle_version"


def manifest_of(target: str, tracking_uri: str = "") -> tuple[Manifest, list[str]]:
    """The manifest behind `target` (a bundle file or a device URL), and how it was found."""
    from edgetune.bundle import peek_manifest

    if not target.startswith(("http://", "https://")):
        if not Path(target).is_file():
            raise EdgetuneError(
                f"{target}: no such bundle file (or give a device URL http(s)://...)"
            )
        return peek_manifest(target), [f"bundle   {target}"]
    health = _device_health(target)
    sha = health.get("model_sha256")
    if not sha:
        raise EdgetuneError(f"{target}: the device serves no model (status {health.get('status')})")
    found = [f"device   {target}: serves {health.get('version')} (status {health.get('status')}), "
             f"model sha256 {sha}"]  # fmt: skip
    return _bundle_from_mlflow(sha, str(health.get("version")), tracking_uri), found


def _device_health(url: str) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=10.0)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as e:
        raise EdgetuneError(f"{url}/health: {type(e).__name__}: {e}") from None


def _bundle_from_mlflow(model_sha256: str, version: str, tracking_uri: str) -> Manifest:
    import mlflow

    from edgetune.bundle import peek_manifest

    client = mlflow.MlflowClient(tracking_uri or None)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{TAG_MODEL_SHA256}` = '{model_sha256}' "
        f"and tags.`{TAG_BUNDLE_VERSION}` = '{version}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise EdgetuneError(
            f"no deploy run in {mlflow.get_tracking_uri()} shipped model sha256 {model_sha256} "
            f"as {version}; give --tracking-uri of the store that made it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(runs[0].info.run_id, "bundle", tmp))
        bundles = sorted(folder.glob("*.tar"))
        if not bundles:
            raise EdgetuneError(f"deploy run {runs[0].info.run_id} kept no bundle artifact")
        return peek_manifest(bundles[0])


def trace(target: str, tracking_uri: str = "") -> list[str]:
    """The lines of the chain from `target`'s model back to data, code and parameters.

    Raises:
        EdgetuneError: the target cannot be read, or its runs are not in the tracking store.
    """
    import mlflow

    manifest, lines = manifest_of(target, tracking_uri)
    lineage = manifest.lineage
    uri = tracking_uri or lineage.get("tracking_uri", "")
    if not lineage.get("parent_run_id"):
        raise EdgetuneError(
            f"{target}: the bundle's manifest names no MLflow run (made before lineage)"
        )
    if uri:
        mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    try:
        parent = client.get_run(lineage["parent_run_id"])
    except mlflow.exceptions.MlflowException:
        raise EdgetuneError(
            f"run {lineage['parent_run_id']} is not in {uri or mlflow.get_tracking_uri()}; "
            "give --tracking-uri of the store that made the bundle"
        ) from None
    model = manifest.files[MODEL_FILE]
    lines.append(f"release  {manifest.version} (sequence {manifest.sequence}, created {manifest.created}), "
                 f"model sha256 {model.sha256}, {model.bytes:,} B")  # fmt: skip
    lines += _model_lines(client, lineage, model.sha256)
    lines += _run_lines(client, parent, lineage, manifest)
    return lines


def _model_lines(client: Any, lineage: dict[str, str], sha256: str) -> list[str]:
    registered = lineage.get("registered_model", "")
    if not registered:
        return []
    name, version = registered.rsplit("/", 1)
    mv = client.get_model_version(name, version)
    aliases = ", ".join(mv.aliases) or "none"
    return [f"model    models:/{registered} (aliases: {aliases}; blessed {mv.tags.get('blessed', '?')}), "
            f"evaluated in run {mv.run_id}"]  # fmt: skip


def _run_lines(client: Any, parent: Any, lineage: dict[str, str], manifest: Manifest) -> list[str]:
    from edgetune.lineage import params_sha256, pipeline_params

    params = pipeline_params(parent)
    digest = params_sha256(params)
    same = (
        "matches the runs"
        if digest == lineage.get("params_sha256")
        else "DIFFERS from the runs now"
    )
    fingerprint = lineage.get("data_fingerprint") or manifest.data_fingerprint or ""
    inputs = [d.dataset for d in parent.inputs.dataset_inputs] if parent.inputs else []
    dataset = next((d for d in inputs if fingerprint.startswith(d.digest)), None)
    shown = {
        k: params[k] for k in ("data_uri", "target_sparsity", "min_accuracy", "seed") if k in params
    }
    return [
        f"run      MLflow {parent.info.run_id} ({parent.info.run_name}, {parent.info.status}), "
        f"pipeline job {lineage.get('pipeline_run_id') or '-'}",
        f"data     fingerprint {fingerprint or '?'}"
        + (
            f"; dataset input {dataset.name} (digest {dataset.digest}, {dataset.source})"
            if dataset
            else "; no dataset input with that digest on the run"
        ),  # fmt: skip
        f"code     git {lineage.get('git_commit') or '?'}, version {lineage.get('code_version') or manifest.code_version}, "
        f"image {lineage.get('image') or '?'}",
        f"model in zoo {lineage.get('zoo_id') or '?'}"
        + (
            f", weights sha256 {lineage['model_file_sha256']}"
            if lineage.get("model_file_sha256")
            else ""
        ),
        f"params   sha256 {lineage.get('params_sha256', '?')} ({same}); {json.dumps(shown)}",
    ]
