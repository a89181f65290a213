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
):
    """Builds and signs bundle-<version>.tar, pushes it to every device in the fleet file.

    Fails (after reporting every device) when a device ends up not serving the new
    version; moves the `champion` alias only when every device serves it.
    """
    from pathlib import Path

    import mlflow
    import numpy as np

    from edgetune import files, litert
    from edgetune.bundle import build_bundle
    from edgetune.components.common import tracking
    from edgetune.components.common.training import load_spec
    from edgetune.components.deploy import core
    from edgetune.errors import EdgetuneError
    from edgetune.fleet import load_fleet
    from edgetune.preprocessing import normalize

    with tracking.component_run(
        "deploy",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ) as run:
        tracking.log_params(
            {"fleet_file": fleet_file, "smoke_samples": smoke_samples, "timeout_s": timeout_s}
        )
        if not signing_key:
            raise EdgetuneError(
                "deploy needs signing_key: an Ed25519 private key (PEM); make one with `edgetune keygen`"
            )
        devices = load_fleet(fleet_file) if fleet_file else []
        spec = load_spec(data.path)
        evaluated = files.read_json(Path(evaluation.path) / files.EVALUATION)
        version = f"v{evaluated['registered_version']}"
        model_path = Path(tflite_int8.path) / files.TFLITE_MODEL
        with np.load(files.split_file(data.path, "test")) as test:
            samples = test["x"][:smoke_samples]
        interpreter = litert.load(str(model_path))
        expected = np.argmax(litert.predict(interpreter, normalize(samples, spec)), axis=-1)
        int8 = evaluated["stages"]["tflite_int8"]
        bundle_path = build_bundle(
            files.artifact_dir(bundle.path) / files.BUNDLE.format(version=version),
            model_path,
            samples,
            expected,
            version=version,
            spec=spec,
            metrics={
                k: int8[k] for k in ("accuracy", "size_bytes", "gzip_bytes", "latency_ms_p50")
            },
            mlflow_run_id=run.info.run_id,
            data_fingerprint=files.read_json(Path(dataset.path) / files.INGEST_REPORT)[
                "fingerprint"
            ],
            private_key=signing_key,
        )
        mlflow.log_artifact(str(bundle_path), "bundle")
        report = core.rollout(
            bundle_path,
            devices,
            timeout_s=timeout_s,
            progress=lambda d: print(
                f"{d['name']}: {d['status']} {d.get('reason') or ''}", flush=True
            ),
        )
        result = report.to_dict()
        files.write_json(Path(bundle.path) / files.DEPLOY_REPORT, result)
        mlflow.log_dict(result, files.DEPLOY_REPORT)
        mlflow.log_metrics({k: result[k] for k in ("succeeded", "failed", "rolled_back")})
        tracking.log_summary_part({"deploy": result})
        if devices and report.succeeded == len(devices):
            tracking.set_model_alias(
                "champion", evaluated["registered_version"], tracking_uri=tracking_uri
            )
        if report.succeeded < len(devices):
            bad = [
                f"{d['name']}: {d['status']} ({d['reason']})"
                for d in result["devices"]
                if d["status"] in ("failed", "rolled_back")
            ]
            raise EdgetuneError(
                f"rollout of {version} reached {report.succeeded}/{len(devices)} devices; {'; '.join(bad)}"
            )
        bundle.metadata.update({"version": version, "devices": len(devices)})
