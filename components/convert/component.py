"""convert as a KFP component: float32 and full-integer int8 .tflite files, checked in LiteRT."""

from typing import List  # noqa: UP035 - KFP reads Input[List[Model]], not the builtin list

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def convert(
    data: dsl.Input[dsl.Dataset],
    float_model: dsl.Input[dsl.Model],
    candidates: dsl.Input[List[dsl.Model]],  # noqa: UP006 - every search branch's folder
    search: dict,  # choose's verdict: which candidate ships
    tflite_float: dsl.Output[dsl.Model],
    tflite_int8: dsl.Output[dsl.Model],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    representative_samples: int = 200,
    seed: int = 0,
):
    """The float32 baseline, and the search's chosen int8 file, also as firmware C source.

    The split model (extractor.tflite, head.npz) goes beside the int8 file and to MLflow.

    model_data.h/.cc go beside the int8 file and to MLflow; logs the files and their sizes.
    """
    import mlflow

    from edgetune import files, firmware
    from edgetune.components.common import tracking, training
    from edgetune.components.convert import core, split
    from edgetune.components.search.records import SearchVerdict

    with tracking.component_run("convert", run_name, pipeline_run_id, tracking_uri, experiment):
        config = training.config_from(core.ConvertConfig, locals())
        tracking.log_params(config)
        outs = {"tflite_float": tflite_float, "tflite_int8": tflite_int8}
        shipped = SearchVerdict.from_dict(search).shipped_dir([c.path for c in candidates])
        report = core.convert_artifacts(data.path, float_model.path, shipped,
                                        tflite_float.path, tflite_int8.path, config)  # fmt: skip
        report.write(tflite_int8.path)
        tracking.record(report)
        for stage, artifact in outs.items():
            artifact.metadata.update(report.sizes(stage))
            mlflow.log_artifact(f"{artifact.path}/{files.TFLITE_MODEL}", stage)
        for name in split.split_files(tflite_int8.path):  # extractor + head, for devices
            mlflow.log_artifact(f"{tflite_int8.path}/{name}", "split")
        int8_file = f"{tflite_int8.path}/{files.TFLITE_MODEL}"
        spec = training.load_spec(data.path)
        for path in firmware.export(int8_file, spec, tflite_int8.path).values():
            mlflow.log_artifact(str(path), "firmware")
