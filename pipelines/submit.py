"""Submits the compiled pipeline to a Kubeflow Pipelines host (`make submit KFP_HOST=...`).

On a cluster every path a parameter names must be reachable from the pods: data_uri as an
fsspec URI (s3://, gs://, ...), tracking_uri as an MLflow server, and fleet_file and
signing_key as files mounted into the component image (e.g. from a Kubernetes secret).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from edgetune.errors import EdgetuneError
from edgetune.pipelines import params as run_params


def main(args: argparse.Namespace) -> int:
    """Checks the parameters (as a cluster would see them), then submits one run; prints its id."""
    package = Path(args.package)
    if not package.is_file():
        raise EdgetuneError(f"{package}: no compiled pipeline; run `make compile` first")
    params = run_params.apply_overrides(run_params.load_preset(args.preset), args.overrides)
    params = run_params.check_parameters(params)
    run_params.validate_values(params, local=False)
    run_params.require_signing_key(
        params, "give the path of a key file mounted in the pods (made by `edgetune keygen`)"
    )
    import kfp

    params.setdefault("run_name", f"kfp-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    client = kfp.Client(host=args.host)
    run = client.create_run_from_pipeline_package(
        str(package), arguments=params, run_name=params["run_name"], experiment_name=args.experiment
    )
    print(f"submitted {params['run_name']}: run id {run.run_id} on {args.host}")
    return 0
