"""fine_tune as a KFP component: frozen backbone + new head, then a gentle unfreeze."""

from kfp import dsl

from edgetune.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def fine_tune(
    data: dsl.Input[dsl.Dataset],
    selection: dsl.Input[dsl.Artifact],
    model: dsl.Output[dsl.Model],
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
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
    from pathlib import Path

    import mlflow

    from edgetune import files
    from edgetune.components.common import tracking, training
    from edgetune.components.fine_tune import core
    from edgetune.zoo.registry import ZooEntry

    with tracking.component_run(
        "fine_tune",
        run_name=run_name,
        pipeline_run_id=pipeline_run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
    ):
        config = core.FineTuneConfig(
            head_epochs=head_epochs,
            unfreeze_epochs=unfreeze_epochs,
            unfreeze_top_layers=unfreeze_top_layers,
            head_learning_rate=head_learning_rate,
            unfreeze_learning_rate=unfreeze_learning_rate,
            batch_size=batch_size,
            patience=patience,
            seed=seed,
        )
        tracking.log_params(config.model_dump())
        entry = ZooEntry.from_dict(files.read_json(Path(selection.path) / files.SELECTION)["entry"])
        float_model, report = core.fine_tune(
            entry, data.path, config, on_epoch=tracking.epoch_logger("")
        )
        training.save_model_artifact(float_model, report, model.path)
        mlflow.log_dict(report, files.TRAIN_REPORT)
        mlflow.log_metric("val_accuracy", report["val_accuracy"])
        model.metadata.update({"val_accuracy": report["val_accuracy"], "params": report["params"]})
