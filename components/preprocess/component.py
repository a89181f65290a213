"""preprocess as a KFP component: model-ready splits, seeded augmentation, the device's spec."""

from typing import Optional

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def preprocess(
    dataset: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    data: dsl.Output[dsl.Dataset],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    augment: Optional[dict] = None,  # noqa: UP045 - KFP reads the annotation
    seed: int = 0,
):
    """Writes train/val/test.npz, preprocessing.json (what the device applies) and a preview."""
    from edgetune import progress
    from edgetune.components.common import tracking
    from edgetune.components.ingest.core import IngestReport
    from edgetune.components.preprocess import core
    from edgetune.components.select_model.core import Selection

    with tracking.component_run("preprocess", run_name, pipeline_run_id, tracking_uri, experiment):
        policy = core.AugmentPolicy.from_dict(augment)
        tracking.log_params(policy, prefix="augment_")
        tracking.log_params({"seed": seed})
        classes = IngestReport.read(dataset.path).classes
        spec = core.model_spec(Selection.read(selection.path).entry, classes)
        reporter = progress.reporter("preprocess: images decoded")
        report = core.preprocess(
            dataset.path, data.path, spec=spec, policy=policy, seed=seed, progress=reporter
        )
        report.write(data.path)
        tracking.record(report, data)
