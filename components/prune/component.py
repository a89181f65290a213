"""prune as a KFP component: magnitude pruning to a target sparsity, stripped."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def prune(
    data: dsl.Input[dsl.Dataset],
    float_model: dsl.Input[dsl.Model],
    model: dsl.Output[dsl.Model],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    target_sparsity: float = 0.5,
    epochs: int = 3,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
):
    """Prunes the float model; writes the stripped sparse model.h5 and the measured sparsity."""
    from edgetune.components.common import tracking, training
    from edgetune.components.prune import core

    with tracking.component_run("prune", run_name, pipeline_run_id, tracking_uri, experiment):
        config = training.config_from(core.PruneConfig, locals())
        tracking.log_params(config)
        source = training.load_model_artifact(float_model.path)
        pruned, report = core.prune(source, data.path, config, on_epoch=tracking.epoch_logger(""))
        training.save_model_artifact(pruned, report, model.path)
        tracking.record(training.TrainReport(report, stage="pruned"), model)
