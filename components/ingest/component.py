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
    import mlflow

    from edgetune import files, progress
    from edgetune.components.common import tracking
    from edgetune.components.ingest import core

    with tracking.component_run(
        "ingest",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        settings = {
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "max_quarantine_fraction": max_quarantine_fraction,
            "min_per_class": min_per_class,
        }
        tracking.log_params({"source": source, **settings})
        report = core.ingest(
            source, dataset.path, progress=progress.reporter("ingest: images read"), **settings
        )
        result = report.to_dict()
        mlflow.log_dict(result, files.INGEST_REPORT)
        counts = {k: result[k] for k in ("n_train", "n_val", "n_test", "n_quarantined")}
        mlflow.log_metrics(counts)
        mlflow.set_tag("data_fingerprint", report.fingerprint)
        for bad in result["quarantined"]:
            print(f"quarantined {bad['file']}: {bad['reason']}")
        summary = {"fingerprint": report.fingerprint, **counts, "classes": list(report.classes)}
        tracking.log_summary_part({"dataset": summary})
        dataset.metadata.update(summary)
