"""federate as a KFP component: federated rounds over the fleet, each an MLflow run."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def federate(
    bundle_uri: str,
    data_uri: str,
    fleet_file: str,
    trusted_key: str,
    signing_key: str,
    report: dsl.Output[dsl.Artifact],
    run_name: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    rounds: int = 1,
    min_devices: int = 2,
    clip_norm: float = 0.0,
    noise_multiplier: float = 0.0,
    seed: int = 0,
    timeout_s: float = 60.0,
    min_accuracy: float = 0.0,
    max_drop_points: float = 1.0,
    rollout_tags: str = "",
):
    """Runs up to `rounds` rounds from the bundle the fleet serves; writes rounds.json.

    Each round's report and bundle go under the report artifact; a round that is stopped
    or not blessed ends the loop (and is reported, not failed).
    """
    from edgetune import files
    from edgetune.components.federate.core import FederateConfig
    from edgetune.components.federate.rounds import run_rounds

    config = FederateConfig(min_devices=min_devices, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                            seed=seed, timeout_s=timeout_s, min_accuracy=min_accuracy,
                            max_drop_points=max_drop_points)  # fmt: skip
    results = run_rounds(bundle_uri, data_uri, fleet_file, trusted_key, signing_key, report.path, config,
                         rounds=rounds, tags=rollout_tags, run_name=run_name or "federate",
                         tracking_uri=tracking_uri, experiment=experiment)  # fmt: skip
    files.write_json(f"{report.path}/rounds.json", results)
    report.metadata.update({"rounds": len(results), "shipped": sum("bundle" in r for r in results)})
