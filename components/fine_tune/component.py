"""fine_tune as a KFP component: frozen backbone + new head, then a gentle unfreeze."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def fine_tune(
    data: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    model: dsl.Output[dsl.Model],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    head_epochs: int = 4,
    unfreeze_epochs: int = 4,
    unfreeze_top_layers: int = 0,
    head_learning_rate: float = 1e-3,
    unfreeze_learning_rate: float = 3e-4,
    batch_size: int = 32,
    patience: int = 3,
    seed: int = 0,
):
    """Trains the float classifier; writes model.h5 (flat Functional graph) and its report."""
    from edgetune.components.common import tracking, training
    from edgetune.components.fine_tune import core
    from edgetune.components.select_model.core import Selection

    with tracking.component_run("fine_tune", run_name, pipeline_run_id, tracking_uri, experiment):
        config = training.config_from(core.FineTuneConfig, locals())
        tracking.log_params(config)
        entry = Selection.read(selection.path).entry
        trained, report = core.fine_tune(
            entry, data.path, config, on_epoch=tracking.epoch_logger("")
        )
        training.save_model_artifact(trained, report, model.path)
        tracking.record(training.TrainReport(report), model)
