"""ingest as a KFP component: an image folder or table to a split, checked Parquet dataset."""

from typing import Optional

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    dataset: dsl.Output[dsl.Dataset],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    data_version: str = "",  # in the cache key only: other data misses the cache
    code_version: str = "",  # in the cache key only: a new release misses the cache
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_quarantine_fraction: float = 0.05,
    min_per_class: int = 5,
    max_pixels: int = 40_000_000,
    fold_case: bool = False,
    label_map: Optional[dict] = None,  # noqa: UP045 - KFP reads the annotation
):
    """Writes the dataset (Parquet shards, dataset_index.json) and ingest_report.json."""
    from edgetune import progress
    from edgetune.components.common import tracking
    from edgetune.components.ingest import core, shards

    with tracking.component_run("ingest", run_name, pipeline_run_id, tracking_uri, experiment):
        settings = dict(val_fraction=val_fraction, test_fraction=test_fraction,
                        max_quarantine_fraction=max_quarantine_fraction, min_per_class=min_per_class)  # fmt: skip
        tracking.log_params({"source": source, **settings})
        reporter = progress.reporter("ingest: images read")
        rules = core.IngestConfig(fold_case=fold_case, label_map=label_map or {}).label_rules()
        tracking.log_params({"max_pixels": max_pixels, **rules.to_dict()})
        try:
            report = core.ingest(source, dataset.path, progress=reporter, max_pixels=max_pixels,
                                 label_rules=rules, **settings)  # fmt: skip
        except core.IngestStopped as stopped:  # the report names every problem: keep it
            import mlflow

            mlflow.log_artifact(str(stopped.report_path))
            raise
        tracking.record(report, dataset)
        listed = shards.read_columns(dataset.path, ["path", "label", "split", "sha256"])
        tracking.log_dataset(listed.to_pandas(), dataset.path, report.fingerprint)
