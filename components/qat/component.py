"""qat as a KFP component: quantization-aware training that preserves the pruned zeros."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def qat(
    data: dsl.Input[dsl.Dataset],
    pruned_model: dsl.Input[dsl.Model],
    model: dsl.Output[dsl.Model],
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    code_version: str = "",  # in the cache key only: a new release misses the cache
    epochs: int = 2,
    learning_rate: float = 5e-5,
    batch_size: int = 32,
    preserve_sparsity: bool = True,
    seed: int = 0,
):
    """Runs PQAT on the pruned model; writes the QAT model.h5 and the sparsity it kept."""
    from edgetune.components.common import tracking, training
    from edgetune.components.qat import core

    with tracking.component_run("qat", run_name, pipeline_run_id, tracking_uri, experiment):
        config = training.config_from(core.QatConfig, locals())
        tracking.log_params(config)
        source = training.load_model_artifact(pruned_model.path)
        on_epoch = tracking.epoch_logger("")
        quantized, report = core.quantize_aware_train(source, data.path, config, on_epoch=on_epoch)
        training.save_model_artifact(quantized, report, model.path)
        tracking.record(training.TrainReport(report, stage="qat"), model)
