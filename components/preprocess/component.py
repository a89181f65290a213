"""preprocess as a KFP component: model-ready splits, seeded augmentation, the device's spec."""

from typing import Optional

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def preprocess(
    dataset: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    data: dsl.Output[dsl.Dataset],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    augment: Optional[dict] = None,  # noqa: UP045 - KFP reads the annotation
    seed: int = 0,
):
    """Writes train/val/test.npz, preprocessing.json (what the device applies) and a preview."""
    from pathlib import Path

    import mlflow

    from edgetune import files, progress
    from edgetune.components.common import tracking
    from edgetune.components.preprocess import core
    from edgetune.preprocessing import PreprocessSpec

    with tracking.component_run(
        "preprocess",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        policy = core.AugmentPolicy.from_dict(augment)
        tracking.log_params(
            {**{f"augment_{k}": v for k, v in policy.to_dict().items()}, "seed": seed}
        )
        entry = files.read_json(Path(selection.path) / files.SELECTION)["entry"]
        classes = files.read_json(Path(dataset.path) / files.INGEST_REPORT)["classes"]
        height, width, channels = entry["input_shape"]
        spec = PreprocessSpec(
            height=height,
            width=width,
            channels=channels,
            labels=tuple(classes),
            **entry["normalization"],
        )
        report = core.preprocess(
            dataset.path,
            files.artifact_dir(data.path),
            spec=spec,
            policy=policy,
            seed=seed,
            progress=progress.reporter("preprocess: images decoded"),
        )
        mlflow.log_dict(report.to_dict(), "preprocess_report.json")
        mlflow.log_artifact(str(Path(data.path) / files.PREPROCESSING_SPEC))
        mlflow.log_artifact(str(Path(data.path) / files.AUGMENT_PREVIEW))
        mlflow.log_metrics({f"n_{split}": n for split, n in report.counts.items()})
        data.metadata.update({"counts": report.counts, "input_shape": [height, width, channels]})
