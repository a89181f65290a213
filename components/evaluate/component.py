"""evaluate as a KFP component: every stage on the test split, and the gate on the int8 file."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    data: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    float_model: dsl.Input[dsl.Model],
    pruned_model: dsl.Input[dsl.Model],
    qat_model: dsl.Input[dsl.Model],
    tflite_float: dsl.Input[dsl.Model],
    tflite_int8: dsl.Input[dsl.Model],
    report: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    min_accuracy: float = 0.95,
    max_drop_points: float = 1.0,
    latency_runs: int = 200,
) -> bool:
    """Writes evaluation.json and confusion_<stage>.png; registers the int8 file; returns blessed."""
    from pathlib import Path

    import mlflow

    from edgetune import files
    from edgetune.components.common import tracking, training
    from edgetune.components.evaluate import core
    from edgetune.components.qat.core import load_qat_model
    from edgetune.config import DeviceProfile

    with tracking.component_run(
        "evaluate",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        policy = core.GatePolicy(min_accuracy=min_accuracy, max_drop_points=max_drop_points)
        tracking.log_params(
            {
                "min_accuracy": min_accuracy,
                "max_drop_points": max_drop_points,
                "latency_runs": latency_runs,
            }
        )
        device = DeviceProfile.from_dict(
            files.read_json(Path(selection.path) / files.SELECTION)["device"]
        )
        x_test, y_test = training.load_split(data.path, "test")
        keras_models = {
            "float": training.load_model(Path(float_model.path) / files.KERAS_MODEL),
            "pruned": training.load_model(Path(pruned_model.path) / files.KERAS_MODEL),
            "qat": load_qat_model(Path(qat_model.path) / files.KERAS_MODEL),
        }
        tflite_files = {
            "tflite_float": Path(tflite_float.path) / files.TFLITE_MODEL,
            "tflite_int8": Path(tflite_int8.path) / files.TFLITE_MODEL,
        }
        out = files.artifact_dir(report.path)
        labels = list(training.load_spec(data.path).labels)
        result = core.evaluate(
            keras_models,
            tflite_files,
            x_test,
            y_test,
            labels,
            policy,
            device,
            out,
            latency_runs=latency_runs,
        )
        blessed = result["gate"]["blessed"]
        version = tracking.register_model_file(
            str(tflite_files["tflite_int8"]), tags={"blessed": str(blessed), "run_name": run_name}
        )
        if blessed:
            tracking.set_model_alias("candidate", version, tracking_uri=tracking_uri)
        result["registered_version"] = version
        files.write_json(out / files.EVALUATION, result)
        mlflow.log_artifacts(str(out), "evaluation")
        stage_summary = {}
        for stage, m in result["stages"].items():
            kept = {
                k: m[k]
                for k in ("accuracy", "size_bytes", "gzip_bytes", "latency_ms_p50")
                if k in m
            }
            stage_summary[stage] = kept
            mlflow.log_metrics({f"{stage}_{k}": v for k, v in kept.items()})
            metrics.log_metric(f"{stage}_accuracy", kept["accuracy"])
        mlflow.log_metric("blessed", int(blessed))
        gate = {"blessed": blessed, "reasons": result["gate"]["reasons"], "model_version": version}
        tracking.log_summary_part({"stages": stage_summary, "gate": gate})
        for reason in result["gate"]["reasons"]:
            print(reason)
    return blessed
