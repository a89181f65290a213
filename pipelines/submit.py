"""`edgetune submit`: the compiled pipeline to a Kubeflow Pipelines host, as a Kubeflow user does it.

Uploads the pipeline (or, when it exists, a new version named by the package's content, reused
when that content was uploaded before), then creates the run in an experiment and namespace.
Auth: `--token` or $KF_PIPELINES_TOKEN (a bearer token, e.g. `kubectl create token`), else
the KFP client's own credentials ($KF_PIPELINES_SA_TOKEN_PATH, a projected service account
token). Before anything is sent, every value a pod would read is checked for the cluster: no
local path (data_uri an fsspec URI, files under the pods' mounts, see pipelines/cluster.py)
and a tracking server URI, not a SQLite or file store only this machine has.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import yaml

from edgetune.errors import EdgetuneError
from edgetune.pipelines import params as run_params
from edgetune.pipelines import versions

TOKEN_ENV = "KF_PIPELINES_TOKEN"
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # the KFP client's own
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # the KFP client's own
HEALTHZ = "/apis/v2beta1/healthz"
# Tracking stores a pod can reach: a server or a database, not a file on this machine.
SERVER_SCHEMES = ("http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")


def main(args: argparse.Namespace) -> int:
    """Checks the parameters as the pods will see them, then uploads and runs; prints the ids."""
    package = Path(args.package)
    if not package.is_file():
        raise EdgetuneError(f"{package}: no compiled pipeline; run `make compile` first")
    params = cluster_parameters(args, package)
    host = (args.host or os.environ.get(ENDPOINT_ENV, "")).rstrip("/")
    if not host:
        raise EdgetuneError(f"no Kubeflow Pipelines host: give --host or set ${ENDPOINT_ENV}")
    token = args.token or os.environ.get(TOKEN_ENV, "")
    check_host(host, token)
    client = _client(host, token, args.namespace)
    with _one_line_api_errors(host):
        pipeline_id, version_id = upload(client, package, args.pipeline_name, args.namespace)
        experiment = client.create_experiment(args.experiment, namespace=args.namespace)
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=params["run_name"],
            params=params,
            pipeline_id=pipeline_id,
            version_id=version_id,
        )
    print(
        f"submitted {params['run_name']}: run {run.run_id}, pipeline {pipeline_id} version "
        f"{version_id}, experiment {args.experiment!r}, namespace {args.namespace or '(default)'}"
    )
    if problem := record_parent(params, run.run_id, compiled_experiment(package)):
        print(f"warning: {problem}")
    return 0


def compiled_experiment(package: Path) -> str:
    """The MLflow experiment the compiled pipeline's pods track to ("" when it sets none)."""
    doc = next(yaml.safe_load_all(package.read_text()))
    for executor in doc.get("deploymentSpec", {}).get("executors", {}).values():
        for env in executor.get("container", {}).get("env", []):
            if env.get("name") == "MLFLOW_EXPERIMENT_NAME":
                return str(env.get("value", ""))
    return ""


def record_parent(params: dict[str, Any], kfp_run_id: str, experiment: str = "") -> str:
    """The run's parent MLflow run, with every run parameter; returns "" or the problem.

    The pods' tasks find (or make) the parent by the run's name and id; this makes it the
    same race-free way (`tracking.parent_run`: if a task was quicker, its parent is kept), so
    the parameters land on the one parent whichever came first. A tracking server this
    machine cannot reach is not an error: the run goes on, without them on the parent.
    """
    from edgetune.components.common import tracking
    from edgetune.pipelines import local_runs
    from edgetune.pipelines.parameters import D

    uri, experiment = params["tracking_uri"], experiment or params.get("experiment") or D.experiment
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    try:  # one attempt: the run is submitted, this only annotates it
        with local_runs.exported(quick):
            experiment_id = tracking.use_experiment(uri, experiment)
            ctx = tracking.RunContext(params["run_name"], kfp_run_id, uri, experiment)
            parent = tracking.parent_run(experiment_id, ctx)
            tracking.log_run_params(parent.info.run_id, {**vars(D), **params})
    except Exception as e:  # any failure of the store is reported, in one line
        return (
            f"the run's parameters are not on its MLflow parent run ({uri}): {tracking.one_line(e)}"
        )
    return ""


def cluster_parameters(args: argparse.Namespace, package: Path) -> dict[str, Any]:
    """Preset + overrides, coerced and checked for a run whose components run in pods."""
    params = run_params.apply_overrides(run_params.load_preset(args.preset), args.overrides)
    params = run_params.check_parameters(params)
    params["tracking_uri"] = check_tracking_server(
        params.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI", "")
    )
    check_pod_paths(params, mount_paths(package))
    run_params.validate_values(params, local=False)
    run_params.require_signing_key(
        params, "the key's path in the pods, e.g. /var/run/secrets/edgetune/signing/signing.key"
    )
    now = datetime.now(UTC)
    params.setdefault("run_name", f"kfp-{now:%Y%m%d-%H%M%S}")
    versions.fill(params, when=f"{now:%Y%m%dT%H%M%S}")
    if params["data_version"].startswith(versions.UNLISTED):
        print(
            f"cannot list {params['data_uri']} from here: ingest and what follows run afresh "
            "(give --set data_version=... to let them hit the cache)"
        )
    return params


def check_tracking_server(uri: str) -> str:
    """A tracking server or database the pods can reach; never empty, SQLite or a file store."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if not uri or scheme not in SERVER_SCHEMES:
        raise EdgetuneError(
            f"pipeline parameter tracking_uri={uri!r}: the pods need an MLflow tracking server "
            "(http(s)://..., or a postgresql/mysql store), not a file or SQLite store on this "
            "machine; give --set tracking_uri=... or set $MLFLOW_TRACKING_URI"
        )
    run_params.check_tracking_uri(uri)
    return uri


def mount_paths(package: Path) -> list[str]:
    """Every volume mount path the compiled pipeline gives its pods (its platform spec)."""
    paths = []
    for doc in yaml.safe_load_all(package.read_text()):
        executors = (
            (doc or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
        ).get("executors", {})
        for config in executors.values():
            for key in ("secretAsVolume", "configMapAsVolume", "pvcMount"):
                paths += [m["mountPath"] for m in config.get(key, []) if m.get("mountPath")]
    return sorted(set(paths))


def check_pod_paths(params: dict[str, Any], mounts: list[str]) -> None:
    """No parameter a pod reads names a path on this machine.

    data_uri and model_uri are remote; each file parameter is an absolute path under a volume
    the pipeline mounts.
    """
    for name in ("data_uri", "model_uri"):
        value = str(params.get(name) or "")
        if value and run_params.local_data_path(value) is not None:
            raise EdgetuneError(
                f"pipeline parameter {name}={value!r} is a path on this machine; the pods read "
                "an fsspec URI (s3://, gs://, ...)"
            )
    where = ", ".join(mounts) or "none: compile with --target cluster"
    for name in run_params.FILE_PARAMETERS:
        value = str(params.get(name) or "")
        if not value:
            continue
        path = PurePosixPath(value)
        if not path.is_absolute() or not any(path.is_relative_to(m) for m in mounts):
            raise EdgetuneError(
                f"pipeline parameter {name}={value!r} is not in a volume the pods mount "
                f"({where}); put the file in the Secret or ConfigMap and give its path there"
            )


def check_host(host: str, token: str, timeout_s: float = 10.0) -> None:
    """One request to the API server's health endpoint: unreachable or unauthorised → one line."""
    request = urllib.request.Request(host + HEALTHZ)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise EdgetuneError(
                f"{host} refused the request (HTTP {e.code}): give a valid token with --token "
                f"or ${TOKEN_ENV}"
            ) from None
        raise EdgetuneError(
            f"{host}{HEALTHZ} answered HTTP {e.code}: is it a Kubeflow Pipelines API?"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise EdgetuneError(f"cannot reach Kubeflow Pipelines at {host}: {reason}") from None


def _client(host: str, token: str, namespace: str | None) -> Any:
    import warnings

    import kfp

    credentials = None
    if not token and os.environ.get(SA_TOKEN_PATH_ENV):
        credentials = kfp.client.ServiceAccountTokenVolumeCredentials(os.environ[SA_TOKEN_PATH_ENV])
    with warnings.catch_warnings():  # "only works with v2.0.0-beta.2 and later": it does
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(
            host=host,
            existing_token=token or None,
            credentials=credentials,
            namespace=namespace or "kubeflow",
        )


@contextlib.contextmanager
def _one_line_api_errors(host: str) -> Iterator[None]:
    """The KFP client's errors (a 40-line HTTP dump) as one EdgetuneError line."""
    from kfp_server_api import ApiException

    try:
        yield
    except ApiException as e:
        message = _api_message(e)
        if e.status in (401, 403):
            message += f"; give a valid token with --token or ${TOKEN_ENV}"
        raise EdgetuneError(f"{host}: HTTP {e.status}: {message}") from None
    except (OSError, ValueError) as e:
        raise EdgetuneError(f"{host}: {type(e).__name__}: {e}") from None


def _api_message(error: Any) -> str:
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        body = {}
    text = body.get("error") or body.get("message") or error.reason or ""
    return str(text).strip().splitlines()[0] if str(text).strip() else "no message"


def upload(client: Any, package: Path, name: str, namespace: str | None) -> tuple[str, str]:
    """The pipeline's id and the id of the version holding this package's content.

    A new pipeline is uploaded as such; an existing one gets a new version named by the
    package's sha256, or keeps the version that already carries that digest (same content).
    """
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    version_name = f"{name}-{digest}"
    description = f"{_description(package)} [package sha256 {digest}]"
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(
            str(package), pipeline_name=name, description=description, namespace=namespace
        )
        first = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1)
        return pipeline.pipeline_id, first.pipeline_versions[0].pipeline_version_id
    found = client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions or []
    for version in found:
        if version.display_name == version_name or digest in (version.description or ""):
            return pipeline_id, version.pipeline_version_id
    version = client.upload_pipeline_version(
        str(package), version_name, pipeline_id=pipeline_id, description=description
    )
    return pipeline_id, version.pipeline_version_id


def _description(package: Path) -> str:
    doc = next(yaml.safe_load_all(package.read_text())) or {}
    return str(doc.get("pipelineInfo", {}).get("description", ""))[:150]
