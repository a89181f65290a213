"""ingest as a KFP component: an image folder or table to a split, checked Parquet dataset."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    dataset: dsl.Output[dsl.Dataset],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_quarantine_fraction: float = 0.05,
    min_per_class: int = 5,
):
    """Writes dataset.parquet and ingest_report.json (fingerprint, counts, quarantine)."""
    from edgetune import progress
    from edgetune.components.common import tracking
    from edgetune.components.ingest import core

    with tracking.component_run("ingest", run_name, pipeline_run_id, tracking_uri, experiment):
        settings = dict(val_fraction=val_fraction, test_fraction=test_fraction,
                        max_quarantine_fraction=max_quarantine_fraction, min_per_class=min_per_class)  # fmt: skip
        tracking.log_params({"source": source, **settings})
        reporter = progress.reporter("ingest: images read")
        report = core.ingest(source, dataset.path, progress=reporter, **settings)
        tracking.record(report, dataset)
