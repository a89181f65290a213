"""finalize: the pipeline's exit handler. Writes summary.json and closes the parent MLflow run.

It runs whether the DAG succeeded or failed, so every run leaves a summary and no run is
left RUNNING: a step that was killed (its run still RUNNING) is ended FAILED here. It opens
no nested run of its own.
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

    from edgetune.components.common import summary, tracking
    from edgetune.components.finalize import model_card

    ctx = tracking.run_context(run_name, pipeline_run_id, tracking_uri, experiment)
    experiment_id = tracking.use_experiment(ctx.tracking_uri, ctx.experiment)
    parent = tracking.parent_run(experiment_id, ctx)
    result = summary.build_summary(experiment_id, parent, status=status.state)
    if status.error_message:
        result["errors"].setdefault("pipeline", status.error_message)
    summary.log_on_parent(parent.info.run_id, result)
    model_card.log_card(parent, result)
    tracking.close_runs(
        parent.info.run_id, "FINISHED" if status.state == "SUCCEEDED" else "FAILED",
        children_status="FAILED",
    )  # fmt: skip
    # kfp's executor logs INFO to stdout, so the table ends the pod's log.
    logging.getLogger("edgetune.components.finalize").info("%s", summary.format_table(result))
