"""finalize: the pipeline's exit handler. Writes summary.json and closes the parent MLflow run.

It runs whether the DAG succeeded or failed, so every run leaves a summary and no parent
run is left RUNNING. It opens no nested run of its own.
"""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def finalize(
    status: dsl.PipelineTaskFinalStatus,
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
):
    """Merges the components' summary parts, logs summary.json to the parent run, ends it."""
    import logging

    import mlflow

    from edgetune import files
    from edgetune.components.common import summary, tracking

    experiment_id = tracking.use_experiment(tracking_uri, experiment)
    parent = tracking.parent_run(experiment_id, run_name or pipeline_run_id, pipeline_run_id)
    result = summary.build_summary(experiment_id, parent, status=status.state)
    if status.error_message:
        result["errors"].setdefault("pipeline", status.error_message)
    client = mlflow.MlflowClient()
    client.log_dict(parent.info.run_id, result, files.SUMMARY)
    client.set_terminated(
        parent.info.run_id, "FINISHED" if status.state == "SUCCEEDED" else "FAILED"
    )
    # kfp's executor logs INFO to stdout, so the table ends the pod's log.
    logging.getLogger("edgetune.components.finalize").info("%s", summary.format_table(result))
