"""qat as a KFP component: quantization-aware training that preserves the pruned zeros."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def qat(
    data: dsl.Input[dsl.Dataset],
    pruned_model: dsl.Input[dsl.Model],
    model: dsl.Output[dsl.Model],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    epochs: int = 2,
    learning_rate: float = 5e-5,
    batch_size: int = 32,
    preserve_sparsity: bool = True,
    seed: int = 0,
):
    """Runs PQAT on the pruned model; writes the QAT model.h5 and the sparsity it kept."""
    from pathlib import Path

    import mlflow

    from edgetune import files
    from edgetune.components.common import tracking, training
    from edgetune.components.qat import core

    with tracking.component_run(
        "qat",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        config = core.QatConfig(
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            preserve_sparsity=preserve_sparsity,
            seed=seed,
        )
        tracking.log_params(config.model_dump())
        source = training.load_model(Path(pruned_model.path) / files.KERAS_MODEL)
        quantized, report = core.quantize_aware_train(
            source, data.path, config, on_epoch=tracking.epoch_logger("")
        )
        training.save_model_artifact(quantized, report, model.path)
        mlflow.log_dict(report, files.TRAIN_REPORT)
        mlflow.log_metrics(
            {k: report[k] for k in ("sparsity_before", "sparsity", "sparsity_kept", "val_accuracy")}
        )
        tracking.log_summary_part(
            {
                "stages": {
                    "qat": {
                        "sparsity": report["sparsity"],
                        "sparsity_kept": report["sparsity_kept"],
                    }
                }
            }
        )
        model.metadata.update({"sparsity": report["sparsity"]})
