"""evaluate as a KFP component: every stage on the test split, and the gate on the int8 file."""

from typing import Optional

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    data: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    float_model: dsl.Input[dsl.Model],
    tflite_float: dsl.Input[dsl.Model],
    tflite_int8: dsl.Input[dsl.Model],
    report: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    min_accuracy: float = 0.95,
    max_drop_points: float = 1.0,
    latency_runs: int = 200,
    search: Optional[dict] = None,  # noqa: UP045 - choose's verdict (SearchVerdict), a check
) -> bool:
    """Writes evaluation.json and confusion_<stage>.png, logs both models; returns blessed.

    The int8 file goes to MLflow as a LiteRT pyfunc model, registered with the gate's
    thresholds; the float model with MLflow's tensorflow flavor.
    """
    from edgetune import files
    from edgetune.components.common import tracking, training
    from edgetune.components.evaluate import core
    from edgetune.components.search.records import SearchVerdict
    from edgetune.components.select_model.core import Selection

    with tracking.component_run("evaluate", run_name, pipeline_run_id, tracking_uri, experiment):
        policy = core.GatePolicy(min_accuracy=min_accuracy, max_drop_points=max_drop_points)
        tracking.log_params(policy, latency_runs=latency_runs)
        stages = {"float": float_model.path, "tflite_float": tflite_float.path,
                  "tflite_int8": tflite_int8.path}  # fmt: skip
        device = Selection.read(selection.path).device
        verdict = SearchVerdict.from_dict(search) if search else None
        result = core.evaluate_artifacts(data.path, stages, policy, device, report.path, latency_runs=latency_runs,
                                         search=(verdict.passed, verdict.check) if verdict else None)  # fmt: skip
        int8_file = f"{tflite_int8.path}/{files.TFLITE_MODEL}"
        examples = training.load_pixels(data.path, "test")[0][:4]
        version = tracking.log_int8_model(int8_file, f"{data.path}/{files.PREPROCESSING_SPEC}", examples,
                                          tags={**result.registration_tags(run_name), **tracking.gate_tags(policy)})  # fmt: skip
        spec = training.load_spec(data.path)
        tracking.log_keras_model(training.load_model_artifact(float_model.path),
                                 examples[:2].astype("float32") * spec.scale + spec.offset)  # fmt: skip
        result = result.registered(version)
        tracking.move_aliases(result.aliases(), tracking_uri=tracking_uri)
        result.write(report.path)
        tracking.record(result, report, folder="evaluation")
        for name, value in result.accuracies().items():
            metrics.log_metric(name, value)
        # A file at the Metrics URI too: kfp.local's cache takes a missing one for a miss.
        files.write_json(metrics.path, result.accuracies())
    return result.blessed
