"""prune as a KFP component: magnitude pruning to a target sparsity, stripped."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def prune(
    data: dsl.Input[dsl.Dataset],
    float_model: dsl.Input[dsl.Model],
    model: dsl.Output[dsl.Model],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    target_sparsity: float = 0.5,
    epochs: int = 3,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
):
    """Prunes the float model; writes the stripped sparse model.h5 and the measured sparsity."""
    from pathlib import Path

    import mlflow

    from edgetune import files
    from edgetune.components.common import tracking, training
    from edgetune.components.prune import core

    with tracking.component_run(
        "prune",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        config = core.PruneConfig(
            target_sparsity=target_sparsity,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            seed=seed,
        )
        tracking.log_params(config.model_dump())
        source = training.load_model(Path(float_model.path) / files.KERAS_MODEL)
        pruned, report = core.prune(source, data.path, config, on_epoch=tracking.epoch_logger(""))
        training.save_model_artifact(pruned, report, model.path)
        mlflow.log_dict(report, files.TRAIN_REPORT)
        mlflow.log_metrics({"sparsity": report["sparsity"], "val_accuracy": report["val_accuracy"]})
        tracking.log_summary_part({"stages": {"pruned": {"sparsity": report["sparsity"]}}})
        model.metadata.update({"sparsity": report["sparsity"]})
