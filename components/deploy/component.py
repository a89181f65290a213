"""deploy as a KFP component: sign the bundle, roll it out to the fleet, roll back the unhealthy.

The pipeline runs it only when evaluate blessed the int8 file.
"""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(
    dataset: dsl.Input[dsl.Dataset],
    data: dsl.Input[dsl.Dataset],
    tflite_int8: dsl.Input[dsl.Model],
    evaluation: dsl.Input[dsl.Artifact],
    bundle: dsl.Output[dsl.Artifact],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    fleet_file: str = "",
    signing_key: str = "",
    smoke_samples: int = 16,
    timeout_s: float = 30.0,
    rollout_waves: str = "100%",
    max_failure_fraction: float = 1.0,
    soak_s: float = 0.0,
    push_concurrency: int = 16,
    rollout_tags: str = "",
    deploy_mode: str = "push",
    channel_uri: str = "",
    channel_waves: str = "100",
    personal_head: str = "reset",
):
    """Signs bundle-<version>.tar and pushes it to the fleet, or publishes it to a pull channel.

    A push fails (after reporting every device) unless every device serves it, and only then
    moves the `champion` alias; a publication reports the channel written.
    """
    import mlflow

    from edgetune.components.common import tracking
    from edgetune.components.deploy import publish, release
    from edgetune.components.evaluate.core import Evaluation
    from edgetune.components.ingest.core import IngestReport

    with tracking.component_run("deploy", run_name, pipeline_run_id, tracking_uri, experiment):
        tracking.log_params(fleet_file=fleet_file, smoke_samples=smoke_samples, timeout_s=timeout_s,
                            deploy_mode=deploy_mode, channel_uri=channel_uri)  # fmt: skip
        evaluated = Evaluation.read(evaluation.path)
        bundle_path = release.make_bundle(
            bundle.path, tflite_int8.path, data.path, evaluated, IngestReport.read(dataset.path).fingerprint,
            signing_key=signing_key, smoke_count=smoke_samples, mlflow_run_id=tracking.active_run_id(),
            lineage=tracking.bundle_lineage(evaluated.registered_version), personal_head=personal_head,
        )  # fmt: skip
        mlflow.log_artifact(str(bundle_path), "bundle")
        tracking.tag_release(bundle_path)
        report = publish.deliver(
            bundle_path, mode=deploy_mode, fleet_file=fleet_file, signing_key=signing_key,
            channel_uri=channel_uri, channel_waves=channel_waves, timeout_s=timeout_s,
            waves=rollout_waves, max_failure_fraction=max_failure_fraction, soak_s=soak_s,
            max_workers=push_concurrency, tags=rollout_tags,
        )  # fmt: skip
        report.write(bundle.path)
        tracking.record(report, bundle)
        version = evaluated.registered_version
        tracking.move_aliases(report.aliases(version), tracking_uri=tracking_uri)
        report.check()
