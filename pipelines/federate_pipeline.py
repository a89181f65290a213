"""The federated-averaging pipeline: the fleet's personal heads averaged, gated, rolled out.

One task (components/federate): it asks each device for its head update (never samples),
averages them (FedAvg, optional DP clipping and noise), judges the average on the test
split with the frozen extractor, and ships a new signed bundle through deploy's rollout.
`make federate-local` runs it through kfp.local against local agents; `compile_federate`
writes its IR for Kubeflow.
"""

import os
from pathlib import Path

from kfp import dsl

from edgetune import files
from edgetune.components.federate.component import federate
from edgetune.components.federate.core import FederateConfig

PIPELINE_NAME = "edgetune-federate"
F = FederateConfig()  # the round's defaults are declared there, once


@dsl.pipeline(name=PIPELINE_NAME, description="Federated averaging of the devices' personal heads.")
def federate_pipeline(
    bundle_uri: str,
    data_uri: str,
    fleet_file: str,
    trusted_key: str,
    signing_key: str,
    run_name: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    rounds: int = 3,
    min_devices: int = F.min_devices,
    clip_norm: float = F.clip_norm,
    noise_multiplier: float = F.noise_multiplier,
    seed: int = F.seed,
    timeout_s: float = F.timeout_s,
    min_accuracy: float = F.min_accuracy,
    max_drop_points: float = F.max_drop_points,
    rollout_tags: str = "",
):
    """Runs the federated rounds (the DAG only wires the one task)."""
    task = federate(
        bundle_uri=bundle_uri, data_uri=data_uri, fleet_file=fleet_file, trusted_key=trusted_key,
        signing_key=signing_key, run_name=run_name, tracking_uri=tracking_uri,
        experiment=experiment, rounds=rounds, min_devices=min_devices, clip_norm=clip_norm,
        noise_multiplier=noise_multiplier, seed=seed, timeout_s=timeout_s,
        min_accuracy=min_accuracy, max_drop_points=max_drop_points, rollout_tags=rollout_tags,
    )  # fmt: skip
    task.set_caching_options(enable_caching=False)  # every round asks the devices anew


def compile_federate(out: str | os.PathLike = "pipelines/federate_pipeline.yaml") -> Path:
    """Writes the federate pipeline's KFP v2 IR YAML (atomically)."""
    from kfp import compiler

    out = Path(out)
    with files.atomic_path(out) as tmp:
        compiler.Compiler().compile(federate_pipeline, str(tmp.with_suffix(".yaml")))
        tmp.with_suffix(".yaml").replace(tmp)
    return out
