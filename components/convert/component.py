"""convert as a KFP component: float32 and full-integer int8 .tflite files, checked in LiteRT."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def convert(
    data: dsl.Input[dsl.Dataset],
    float_model: dsl.Input[dsl.Model],
    qat_model: dsl.Input[dsl.Model],
    tflite_float: dsl.Output[dsl.Model],
    tflite_int8: dsl.Output[dsl.Model],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    representative_samples: int = 200,
    seed: int = 0,
):
    """Writes model.tflite into each output; logs both files and their sizes."""
    from pathlib import Path

    import mlflow
    import numpy as np

    from edgetune import files
    from edgetune.components.common import tracking, training
    from edgetune.components.convert import core
    from edgetune.components.qat.core import load_qat_model

    with tracking.component_run(
        "convert",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        tracking.log_params({"representative_samples": representative_samples, "seed": seed})
        x_train, _ = training.load_split(data.path, "train")
        pick = np.random.default_rng(seed).permutation(len(x_train))[:representative_samples]
        float_out = files.artifact_dir(tflite_float.path) / files.TFLITE_MODEL
        int8_out = files.artifact_dir(tflite_int8.path) / files.TFLITE_MODEL
        report = core.convert(
            training.load_model(Path(float_model.path) / files.KERAS_MODEL),
            load_qat_model(Path(qat_model.path) / files.KERAS_MODEL),
            x_train[pick],
            float_out,
            int8_out,
        )
        files.write_json(Path(tflite_int8.path) / files.CONVERT_REPORT, report)
        mlflow.log_dict(report, files.CONVERT_REPORT)
        mlflow.log_artifact(str(float_out), "tflite_float")
        mlflow.log_artifact(str(int8_out), "tflite_int8")
        mlflow.log_metrics(
            {
                "int8_to_float": report["int8_to_float"],
                "int8_gzip_to_float": report["int8_gzip_to_float"],
            }
        )
        sizes = {
            stage: {k: report[stage][k] for k in ("size_bytes", "gzip_bytes")}
            for stage in ("tflite_float", "tflite_int8")
        }
        mlflow.log_metrics({f"{stage}_{k}": v for stage, d in sizes.items() for k, v in d.items()})
        tracking.log_summary_part({"stages": sizes})
        tflite_float.metadata.update(sizes["tflite_float"])
        tflite_int8.metadata.update(sizes["tflite_int8"])
