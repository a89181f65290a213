"""The edgetune DAG. It only wires: names tasks, passes outputs, sets the gate.

    ingest ──────┐
                 ├─► preprocess ─► fine_tune ─► prune ─► qat ─► convert ─► evaluate ─► [blessed] deploy
    select_model ┘
    (finalize runs last, whatever happened: summary.json, parent MLflow run closed)

select_model needs only the device profile and the zoo, so it runs beside ingest, and
preprocess can then size the data for the chosen model's input.
"""

from typing import Optional

from kfp import dsl

from edgetune.components.convert.component import convert
from edgetune.components.deploy.component import deploy
from edgetune.components.evaluate.component import evaluate
from edgetune.components.finalize.component import finalize
from edgetune.components.fine_tune.component import fine_tune
from edgetune.components.ingest.component import ingest
from edgetune.components.preprocess.component import preprocess
from edgetune.components.prune.component import prune
from edgetune.components.qat.component import qat
from edgetune.components.select_model.component import select_model

PIPELINE_NAME = "edgetune"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Fine-tune, prune, quantize (int8 TFLite), verify and deploy a small image model to edge devices.",
)
def edgetune_pipeline(  # noqa: PLR0913 - every knob a user may turn is a run parameter
    data_uri: str,
    run_name: str = "",
    tracking_uri: str = "",
    experiment: str = "edgetune",
    device_profile: str = "cortex-m7",
    devices_file: str = "",
    zoo_file: str = "",
    model_id: str = "",
    domain: str = "handwritten-digits",
    allow_download: bool = False,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_quarantine_fraction: float = 0.05,
    min_per_class: int = 5,
    augment: Optional[dict] = None,  # noqa: UP045 - KFP reads the annotation
    head_epochs: int = 8,
    unfreeze_epochs: int = 10,
    unfreeze_top_layers: int = 0,
    head_learning_rate: float = 1e-3,
    unfreeze_learning_rate: float = 3e-4,
    batch_size: int = 32,
    patience: int = 4,
    target_sparsity: float = 0.5,
    prune_epochs: int = 4,
    prune_learning_rate: float = 1e-4,
    qat_epochs: int = 3,
    qat_learning_rate: float = 5e-5,
    representative_samples: int = 200,
    min_accuracy: float = 0.95,
    max_drop_points: float = 1.0,
    latency_runs: int = 200,
    fleet_file: str = "",
    signing_key: str = "",
    smoke_samples: int = 16,
    deploy_timeout_s: float = 30.0,
    seed: int = 0,
):
    run = {
        "run_name": run_name,
        "pipeline_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        "tracking_uri": tracking_uri,
        "experiment": experiment,
    }
    with dsl.ExitHandler(finalize(**run)):
        data_in = ingest(
            source=data_uri,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            max_quarantine_fraction=max_quarantine_fraction,
            min_per_class=min_per_class,
            **run,
        )
        chosen = select_model(
            device_profile=device_profile,
            devices_file=devices_file,
            zoo_file=zoo_file,
            model_id=model_id,
            domain=domain,
            allow_download=allow_download,
            **run,
        )
        data = preprocess(
            dataset=data_in.outputs["dataset"],
            selection=chosen.outputs["selection"],
            augment=augment,
            seed=seed,
            **run,
        )
        ready = data.outputs["data"]
        tuned = fine_tune(
            data=ready,
            selection=chosen.outputs["selection"],
            head_epochs=head_epochs,
            unfreeze_epochs=unfreeze_epochs,
            unfreeze_top_layers=unfreeze_top_layers,
            head_learning_rate=head_learning_rate,
            unfreeze_learning_rate=unfreeze_learning_rate,
            batch_size=batch_size,
            patience=patience,
            seed=seed,
            **run,
        )
        pruned = prune(
            data=ready,
            float_model=tuned.outputs["model"],
            target_sparsity=target_sparsity,
            epochs=prune_epochs,
            learning_rate=prune_learning_rate,
            batch_size=batch_size,
            seed=seed,
            **run,
        )
        quantized = qat(
            data=ready,
            pruned_model=pruned.outputs["model"],
            epochs=qat_epochs,
            learning_rate=qat_learning_rate,
            batch_size=batch_size,
            seed=seed,
            **run,
        )
        converted = convert(
            data=ready,
            float_model=tuned.outputs["model"],
            qat_model=quantized.outputs["model"],
            representative_samples=representative_samples,
            seed=seed,
            **run,
        )
        judged = evaluate(
            data=ready,
            selection=chosen.outputs["selection"],
            float_model=tuned.outputs["model"],
            pruned_model=pruned.outputs["model"],
            qat_model=quantized.outputs["model"],
            tflite_float=converted.outputs["tflite_float"],
            tflite_int8=converted.outputs["tflite_int8"],
            min_accuracy=min_accuracy,
            max_drop_points=max_drop_points,
            latency_runs=latency_runs,
            **run,
        )
        # kfp.local resolves a condition only on a task's single unnamed output ("Output").
        with dsl.If(judged.outputs["Output"] == True, name="blessed"):  # noqa: E712
            deploy(
                dataset=data_in.outputs["dataset"],
                data=ready,
                tflite_int8=converted.outputs["tflite_int8"],
                evaluation=judged.outputs["report"],
                fleet_file=fleet_file,
                signing_key=signing_key,
                smoke_samples=smoke_samples,
                timeout_s=deploy_timeout_s,
                **run,
            )
