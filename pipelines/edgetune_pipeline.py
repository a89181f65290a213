"""The edgetune DAG. It only wires: names tasks, passes outputs, sets the gate.

    ingest ──────┐                                  ┌─► candidate ─┐
                 ├─► preprocess ─► fine_tune ─► search_space ─► ... (ParallelFor) ├─► choose ─► convert ─► evaluate ─► [blessed] deploy
    select_model ┘                                  └─► candidate ─┘ (Collected)
    (finalize runs last, whatever happened: summary.json, parent MLflow run closed)

select_model needs only the device profile and the zoo, so it runs beside ingest, and
preprocess can then size the data for the chosen model's input. The compression search:
search_space lists the candidates of the declared space (the fixed recipe when it is off),
each candidate is a branch of a `dsl.ParallelFor` (distil / prune / quantize, measured on its
file), and choose takes them all (`dsl.Collected`) and picks by the rule; its file is what
convert exports for firmware, evaluate gates and deploy ships. kfp.local runs the same loop,
the branches one after another.

Caching: the steps up to evaluate are cached on what they compute from (data_version, the
parameters, code_version); the run's identity (name, job id, tracking URI, experiment) is not
one of their inputs but reaches them in the environment, so an unchanged step of a new run is
a cache hit. deploy and finalize run every time. `build_pipeline(settings)` adds the cluster
wiring (pipelines/cluster.py); `edgetune_pipeline` is the DAG without it, which kfp.local runs.
"""

from kfp import dsl
from kfp.dsl import PipelineTask

from edgetune.components.convert.component import convert
from edgetune.components.deploy.component import deploy
from edgetune.components.evaluate.component import evaluate
from edgetune.components.finalize.component import finalize
from edgetune.components.fine_tune.component import fine_tune
from edgetune.components.ingest.component import ingest
from edgetune.components.preprocess.component import preprocess
from edgetune.components.search.component import candidate, choose, search_space
from edgetune.components.select_model.component import select_model
from edgetune.pipelines.cluster import CACHED_STEPS, ClusterSettings, wire
from edgetune.pipelines.parameters import D

PIPELINE_NAME = "edgetune"
DESCRIPTION = "Fine-tune, prune, quantize (int8 TFLite), verify and deploy a small image model to edge devices."


def _step(task: PipelineTask, step: str, cluster: ClusterSettings | None) -> PipelineTask:
    """Caching on for the content-keyed steps, off for the rest; the cluster wiring if any."""
    task.set_caching_options(enable_caching=step in CACHED_STEPS)
    if cluster is not None:
        wire(task, step, cluster)
    return task


def build_pipeline(cluster: ClusterSettings | None = None):
    """The DAG as a KFP pipeline; with `cluster`, wired for Kubernetes (secrets, resources...)."""

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def edgetune_pipeline(  # every knob a user may turn is a run parameter
        data_uri: str,
        run_name: str = D.run_name,
        tracking_uri: str = D.tracking_uri,
        experiment: str = D.experiment,
        data_version: str = D.data_version,
        code_version: str = D.code_version,
        device_profile: str = D.device_profile,
        devices_file: str = D.devices_file,
        zoo_file: str = D.zoo_file,
        model_id: str = D.model_id,
        model_uri: str = D.model_uri,
        feature_layer: str = D.feature_layer,
        model_normalization: str = D.model_normalization,
        domain: str = D.domain,
        allow_download: bool = D.allow_download,
        val_fraction: float = D.val_fraction,
        test_fraction: float = D.test_fraction,
        max_quarantine_fraction: float = D.max_quarantine_fraction,
        min_per_class: int = D.min_per_class,
        max_pixels: int = D.max_pixels,
        fold_case: bool = D.fold_case,
        label_map: dict = D.label_map,
        augment: dict = D.augment,
        head_epochs: int = D.head_epochs,
        unfreeze_epochs: int = D.unfreeze_epochs,
        unfreeze_top_layers: int = D.unfreeze_top_layers,
        head_learning_rate: float = D.head_learning_rate,
        unfreeze_learning_rate: float = D.unfreeze_learning_rate,
        batch_size: int = D.batch_size,
        patience: int = D.patience,
        target_sparsity: float = D.target_sparsity,
        prune_epochs: int = D.prune_epochs,
        prune_learning_rate: float = D.prune_learning_rate,
        qat_epochs: int = D.qat_epochs,
        qat_learning_rate: float = D.qat_learning_rate,
        representative_samples: int = D.representative_samples,
        search_enabled: bool = D.search_enabled,
        search_sparsity: list = D.search_sparsity,
        search_quantization: list = D.search_quantization,
        search_students: list = D.search_students,
        distill_alpha: float = D.distill_alpha,
        distill_temperature: float = D.distill_temperature,
        distill_epochs: int = D.distill_epochs,
        champion_margin_points: float = D.champion_margin_points,
        min_accuracy: float = D.min_accuracy,
        max_drop_points: float = D.max_drop_points,
        latency_runs: int = D.latency_runs,
        fleet_file: str = D.fleet_file,
        signing_key: str = D.signing_key,
        smoke_samples: int = D.smoke_samples,
        deploy_timeout_s: float = D.deploy_timeout_s,
        rollout_waves: str = D.rollout_waves,
        max_failure_fraction: float = D.max_failure_fraction,
        rollout_soak_s: float = D.rollout_soak_s,
        push_concurrency: int = D.push_concurrency,
        rollout_tags: str = D.rollout_tags,
        deploy_mode: str = D.deploy_mode,
        channel_uri: str = D.channel_uri,
        channel_waves: str = D.channel_waves,
        personal_head: str = D.personal_head,
        seed: int = D.seed,
    ):
        """The whole run: ingest to deploy, gated on evaluate's verdict, with finalize on exit."""
        # The run's identity, for the steps that run every time; the cached ones read it from
        # the environment (pipelines/cluster.py), so it is not part of their cache key.
        run = {
            "run_name": run_name,
            "pipeline_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            "tracking_uri": tracking_uri,
            "experiment": experiment,
        }
        code = {"code_version": code_version}
        with dsl.ExitHandler(_step(finalize(**run), "finalize", cluster)):
            data_in = ingest(
                source=data_uri,
                data_version=data_version,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                max_quarantine_fraction=max_quarantine_fraction,
                min_per_class=min_per_class,
                max_pixels=max_pixels,
                fold_case=fold_case,
                label_map=label_map,
                **code,
            )
            _step(data_in, "ingest", cluster)
            chosen = select_model(
                device_profile=device_profile,
                devices_file=devices_file,
                zoo_file=zoo_file,
                model_id=model_id,
                model_uri=model_uri,
                feature_layer=feature_layer,
                model_normalization=model_normalization,
                domain=domain,
                allow_download=allow_download,
                **code,
            )
            _step(chosen, "select_model", cluster)
            data = preprocess(
                dataset=data_in.outputs["dataset"],
                selection=chosen.outputs["selection"],
                augment=augment,
                seed=seed,
                **code,
            )
            _step(data, "preprocess", cluster)
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
                **code,
            )
            _step(tuned, "fine_tune", cluster)
            planned = search_space(
                data=ready,
                float_model=tuned.outputs["model"],
                selection=chosen.outputs["selection"],
                enabled=search_enabled,
                sparsity=search_sparsity,
                quantization=search_quantization,
                students=search_students,
                target_sparsity=target_sparsity,
                **code,
            )
            _step(planned, "search_space", cluster)
            with dsl.ParallelFor(planned.outputs["Output"], name="candidates") as spec:
                branch = candidate(
                    spec=spec,
                    data=ready,
                    float_model=tuned.outputs["model"],
                    selection=chosen.outputs["selection"],
                    space=planned.outputs["space"],
                    prune_epochs=prune_epochs,
                    prune_learning_rate=prune_learning_rate,
                    qat_epochs=qat_epochs,
                    qat_learning_rate=qat_learning_rate,
                    batch_size=batch_size,
                    representative_samples=representative_samples,
                    distill_alpha=distill_alpha,
                    distill_temperature=distill_temperature,
                    distill_epochs=distill_epochs,
                    seed=seed,
                    **code,
                )
                _step(branch, "candidate", cluster)
            picked = choose(
                data=ready,
                selection=chosen.outputs["selection"],
                candidates=dsl.Collected(branch.outputs["model"]),
                max_drop_points=max_drop_points,
                champion_margin_points=champion_margin_points,
            )
            _step(picked, "choose", cluster)
            # choose runs every time (the champion may have changed); what comes after takes
            # the branches' folders and its verdict, a value, so it is cached when the choice is
            # the same (the branches' folders are the cached ones).
            converted = convert(
                data=ready,
                float_model=tuned.outputs["model"],
                candidates=dsl.Collected(branch.outputs["model"]),
                search=picked.outputs["Output"],
                representative_samples=representative_samples,
                seed=seed,
                **code,
            )
            _step(converted, "convert", cluster)
            judged = evaluate(
                data=ready,
                selection=chosen.outputs["selection"],
                float_model=tuned.outputs["model"],
                tflite_float=converted.outputs["tflite_float"],
                tflite_int8=converted.outputs["tflite_int8"],
                search=picked.outputs["Output"],
                min_accuracy=min_accuracy,
                max_drop_points=max_drop_points,
                latency_runs=latency_runs,
                **code,
            )
            _step(judged, "evaluate", cluster)
            # kfp.local resolves a condition only on a task's single unnamed output ("Output").
            with dsl.If(judged.outputs["Output"] == True, name="blessed"):  # noqa: E712
                shipped = deploy(
                    dataset=data_in.outputs["dataset"],
                    data=ready,
                    tflite_int8=converted.outputs["tflite_int8"],
                    evaluation=judged.outputs["report"],
                    fleet_file=fleet_file,
                    signing_key=signing_key,
                    smoke_samples=smoke_samples,
                    timeout_s=deploy_timeout_s,
                    rollout_waves=rollout_waves,
                    max_failure_fraction=max_failure_fraction,
                    soak_s=rollout_soak_s,
                    push_concurrency=push_concurrency,
                    rollout_tags=rollout_tags,
                    deploy_mode=deploy_mode,
                    channel_uri=channel_uri,
                    channel_waves=channel_waves,
                    personal_head=personal_head,
                    **run,
                )
                _step(shipped, "deploy", cluster)

    return edgetune_pipeline


# The DAG without cluster wiring: what kfp.local runs (`edgetune local-run`) and tests import.
edgetune_pipeline = build_pipeline()
