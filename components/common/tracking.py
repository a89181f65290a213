"""MLflow tracking: one parent run per pipeline run, one nested run per component.

Components run in separate processes (pods on a cluster). A component finds its run context
in the environment first (`EDGETUNE_RUN_NAME`, `EDGETUNE_PIPELINE_RUN_ID`,
`MLFLOW_TRACKING_URI`, `MLFLOW_EXPERIMENT_NAME`, `EDGETUNE_PARENT_RUN_ID`), then in its
inputs, so the run's identity need not be a cache-keyed input. With a parent run id given
(`edgetune local-run` creates the parent before the DAG starts) every step attaches to it;
without one the parent is found by its pipeline job id tag, and when two first steps create
it at once the older wins and the other deletes its duplicate (see `parent_run`). mlflow is
imported inside the functions: a component file must import without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from edgetune.lineage import TAG_COMPONENT, lineage_tags, params_sha256, pipeline_params, step_runs

if TYPE_CHECKING:
    from edgetune.components.common.outputs import StepOutput

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
RUN_NAME_ENV = "EDGETUNE_RUN_NAME"
PIPELINE_RUN_ID_ENV = "EDGETUNE_PIPELINE_RUN_ID"
PARENT_RUN_ID_ENV = "EDGETUNE_PARENT_RUN_ID"
# The store behind a short-lived tracking server (local-run's): what lineage records.
TRACKING_STORE_ENV = "EDGETUNE_TRACKING_STORE"
DEFAULT_EXPERIMENT = "edgetune"
REGISTERED_MODEL = "edgetune-int8"
TAG_RUN_NAME = "edgetune.run_name"
TAG_PIPELINE_RUN_ID = "edgetune.pipeline_run_id"
TAG_ERROR = "edgetune.error"
# The MLflow UI opens an experiment of this kind on its runs (3.x shows GenAI screens otherwise).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
SUMMARY_PART = "summary_part.json"
# How long a creator of the parent run waits before looking for duplicates: a rival whose
# run is older must have committed it by then (a database write takes milliseconds).
PARENT_SETTLE_S = 1.0


@dataclass(frozen=True)
class RunContext:
    """Which pipeline run a component belongs to, and where it is tracked."""

    run_name: str
    pipeline_run_id: str
    tracking_uri: str
    experiment: str
    parent_run_id: str = ""

    @property
    def key(self) -> str:
        """What identifies the pipeline run: its job id, else its name."""
        return self.pipeline_run_id or self.run_name


def run_context(
    run_name: str = "",
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "",
) -> RunContext:
    """The run context: each value from the environment first, else the component's input."""
    env = os.environ
    return RunContext(
        run_name=env.get(RUN_NAME_ENV) or run_name,
        pipeline_run_id=env.get(PIPELINE_RUN_ID_ENV) or pipeline_run_id,
        tracking_uri=resolve_tracking_uri(env.get(TRACKING_URI_ENV) or tracking_uri),
        experiment=env.get(EXPERIMENT_ENV) or experiment or DEFAULT_EXPERIMENT,
        parent_run_id=env.get(PARENT_RUN_ID_ENV, ""),
    )


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store in the working directory."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str = "") -> str:
    """`uri`, or when it is empty the default: $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    return uri or default_tracking_uri()


def _artifact_location(uri: str) -> str | None:
    # A SQLite store keeps its artifacts beside the database file, wherever the process runs.
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = Path(parsed.path[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        return (db.parent / "mlruns").resolve().as_uri()
    return None


def use_experiment(tracking_uri: str, experiment: str) -> str:
    """Points mlflow at the store and experiment (creating it); returns the experiment id."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
        kind = found.tags.get(EXPERIMENT_KIND_TAG)
    else:
        kind = None
        try:
            experiment_id = client.create_experiment(
                experiment, artifact_location=_artifact_location(uri)
            )
        except Exception:  # another process created it first
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    if kind != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def find_parent_run(experiment_id: str, run_name: str) -> Any | None:
    """The parent run named `run_name` (the oldest, should there be two), or None."""
    found = _parent_runs(experiment_id, {TAG_RUN_NAME: run_name})
    return found[0] if found else None


def _identity(ctx: RunContext) -> dict[str, str]:
    # Every identity the component knows must match: a job id is unique, a name may be reused.
    tags = {TAG_RUN_NAME: ctx.run_name, TAG_PIPELINE_RUN_ID: ctx.pipeline_run_id}
    return {k: v for k, v in tags.items() if v}


def _parent_runs(experiment_id: str, identity: dict[str, str]) -> list[Any]:
    import mlflow

    match = " and ".join(f"tags.`{k}` = '{v}'" for k, v in identity.items())
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"{match} and tags.`{TAG_COMPONENT}` = 'pipeline'",
        max_results=100,
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def parent_tags(ctx: RunContext) -> dict[str, str]:
    """The tags that make a run the parent of pipeline run `ctx`."""
    return {
        TAG_RUN_NAME: ctx.run_name or ctx.key,
        TAG_PIPELINE_RUN_ID: ctx.pipeline_run_id,
        TAG_COMPONENT: "pipeline",
        **lineage_tags(),
    }


def parent_run(experiment_id: str, ctx: RunContext) -> Any:
    """The pipeline's parent run: the one named by id, else found by tag, else created once.

    Creation is race-free without locks: every creator creates, waits PARENT_SETTLE_S, then
    searches; the oldest parent (start time, then run id) wins, and a creator that lost
    deletes its own run and attaches to the winner.
    """
    import mlflow

    client = mlflow.MlflowClient()
    if ctx.parent_run_id:
        return client.get_run(ctx.parent_run_id)
    identity = _identity(ctx)
    found = _parent_runs(experiment_id, identity)
    if found:
        return found[0]
    mine = client.create_run(experiment_id, run_name=ctx.run_name or ctx.key, tags=parent_tags(ctx))
    time.sleep(PARENT_SETTLE_S)
    winner = _parent_runs(experiment_id, identity)[0]
    if winner.info.run_id != mine.info.run_id:
        client.delete_run(mine.info.run_id)
    return winner


@contextlib.contextmanager
def component_run(
    component: str,
    run_name: str,
    pipeline_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = DEFAULT_EXPERIMENT,
) -> Iterator[Any]:
    """A nested MLflow run for one component of pipeline run `run_name`.

    Every wrapper opens its run in one line, passing its four run parameters in this order:
    `with tracking.component_run("step", run_name, pipeline_run_id, tracking_uri, experiment):`.
    On an exception the run ends FAILED with the one-line cause in the `edgetune.error` tag,
    where the local runner and the MLflow UI find it, and the exception propagates.
    """
    import mlflow

    ctx = run_context(run_name, pipeline_run_id, tracking_uri, experiment)
    experiment_id = use_experiment(ctx.tracking_uri, ctx.experiment)
    parent = parent_run(experiment_id, ctx)
    tags = {TAG_COMPONENT: component, TAG_RUN_NAME: ctx.run_name or ctx.key, **lineage_tags()}
    with mlflow.start_run(run_name=component, parent_run_id=parent.info.run_id, tags=tags) as run:
        from edgetune.components.common.crash import TAG_FAULT_LOG, record_fatal_signals

        mlflow.set_tag(TAG_FAULT_LOG, record_fatal_signals(run.info.run_id))
        try:
            yield run
        except BaseException as e:
            mlflow.set_tag(TAG_ERROR, one_line(e))
            mlflow.end_run("FAILED")
            raise


def active_run_id() -> str:
    """The MLflow run id of the component run in progress (for lineage in what it writes)."""
    import mlflow

    return mlflow.active_run().info.run_id


def one_line(error: BaseException) -> str:
    """The error as one line, `Type: first line of the message` (at most 2,000 characters)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:2000]


def log_summary_part(part: dict[str, Any]) -> None:
    """This component's share of summary.json, merged by the finalize step."""
    import mlflow

    mlflow.log_dict(part, SUMMARY_PART)


def log_params(*params: Any, prefix: str = "", **named: Any) -> None:
    """Logs run parameters: dicts, dataclasses, pydantic models and `named` values.

    Every name is logged after `prefix`.
    """
    import mlflow

    merged = {k: v for p in (*params, named) for k, v in _as_dict(p).items()}
    mlflow.log_params({f"{prefix}{k}": _param_value(v) for k, v in merged.items()})


def _as_dict(params: Any) -> dict[str, Any]:
    if hasattr(params, "model_dump"):
        return params.model_dump()
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    return dict(params)


SECRET_PARAMS = ("signing_key",)  # may be PEM text: only whether it was given is logged


def log_run_params(run_id: str, params: dict[str, Any]) -> None:
    """Logs the run parameters on run `run_id` (the parent), secrets as `<set>` or empty."""
    import mlflow
    from mlflow.entities import Param

    values = {
        k: ("<set>" if v else "") if k in SECRET_PARAMS else str(_param_value(v))
        for k, v in params.items()
    }
    mlflow.MlflowClient().log_batch(run_id, params=[Param(k, v) for k, v in values.items()])


def _param_value(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) else str(v)


def epoch_logger(prefix: str):
    """A callback (phase, epoch, logs) that logs Keras epoch metrics as MLflow step metrics.

    Names say which split they measure, so each means one thing across the pipeline's runs:
    `qat_train_accuracy` (training batches), `qat_val_accuracy`; evaluate's `qat_accuracy`
    is the test split.
    """
    import mlflow

    def log(phase: str, epoch: int, logs: dict[str, float]) -> None:
        name = f"{prefix}{phase}_" if phase else prefix
        mlflow.log_metrics(
            {f"{name}{_split_named(k)}": float(v) for k, v in logs.items()}, step=epoch
        )

    return log


def _split_named(keras_key: str) -> str:
    # Keras names training-batch metrics plainly ("accuracy") and validation ones "val_...".
    return keras_key if keras_key.startswith("val_") else f"train_{keras_key}"


def register_model_file(
    path: str, *, name: str = REGISTERED_MODEL, tags: dict[str, str] | None = None
) -> str:
    """Logs `path` in the active run and registers it as a new version of model `name`.

    Returns:
        The new version number, as a string.
    """
    import mlflow

    client = mlflow.MlflowClient()
    mlflow.log_artifact(path, "registered")
    source = mlflow.get_artifact_uri(f"registered/{Path(path).name}")
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            name, description="edgetune int8 .tflite models, as judged by the gate"
        )
    version = client.create_model_version(
        name, source=source, run_id=mlflow.active_run().info.run_id, tags=tags
    )
    return str(version.version)


def register(output: Any, path: str | os.PathLike, *, run_name: str, tracking_uri: str = "") -> Any:
    """Registers the file at `path` as the step's output decides, and moves its aliases.

    `output` (e.g. an `Evaluation`) gives the new version's tags (`registration_tags`), takes
    the version (`registered`) and names the aliases to move to it (`aliases`).

    Returns:
        The output, registered.
    """
    version = register_model_file(str(path), tags=output.registration_tags(run_name))
    registered = output.registered(version)
    move_aliases(registered.aliases(), tracking_uri=tracking_uri)
    return registered


def move_aliases(
    aliases: Mapping[str, str], *, name: str = REGISTERED_MODEL, tracking_uri: str = ""
) -> None:
    """Points each registry alias at its version of model `name`; the step's core chose them."""
    for alias, version in aliases.items():
        set_model_alias(alias, version, name=name, tracking_uri=tracking_uri)


TAG_DATA_FINGERPRINT = "edgetune.data_fingerprint"
DIGEST_CHARS = 36  # MLflow's dataset digest column holds 36 characters


def log_dataset(
    frame: Any, source: str | os.PathLike, fingerprint: str, *, name: str = "edgetune-data"
) -> None:
    """Logs ingest's dataset (a DataFrame, one row per image) as an input of the run and its parent.

    The digest is the dataset fingerprint (its first 36 characters, what MLflow's column
    holds; the whole one is the `edgetune.data_fingerprint` tag of both runs).
    """
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    dataset = mlflow.data.from_pandas(
        frame, source=str(source), name=name, digest=fingerprint[:DIGEST_CHARS]
    )
    mlflow.log_input(dataset, context="training")
    mlflow.set_tag(TAG_DATA_FINGERPRINT, fingerprint)
    run = mlflow.active_run()
    parent_id = mlflow.MlflowClient().get_run(run.info.run_id).data.tags.get("mlflow.parentRunId")
    if parent_id:
        client = mlflow.MlflowClient()
        tags = [InputTag("mlflow.data.context", "training")]
        client.log_inputs(parent_id, [DatasetInput(dataset._to_mlflow_entity(), tags)])
        client.set_tag(parent_id, TAG_DATA_FINGERPRINT, fingerprint)


INT8_MODEL_NAME = "int8_model"
# The pyfunc's code: logged as a file, so loading the model needs no edgetune (see its docstring).
LITERT_MODEL_CODE = Path(__file__).resolve().parents[1] / "evaluate" / "litert_model.py"


def log_int8_model(
    model_file: str | os.PathLike,
    spec_file: str | os.PathLike,
    input_example: Any,
    *,
    name: str = REGISTERED_MODEL,
    tags: dict[str, str] | None = None,
) -> str:
    """Logs the int8 file as an MLflow pyfunc model (LiteRT) and registers a new version.

    The model carries the `.tflite` and the preprocessing spec as artifacts, a signature
    inferred from `input_example` (uint8 pixels), and pinned requirements. The version gets
    `tags` and the lineage tags.

    Returns:
        The new version number, as a string.
    """
    import mlflow

    info = mlflow.pyfunc.log_model(
        name=INT8_MODEL_NAME,
        python_model=str(LITERT_MODEL_CODE),
        artifacts={"tflite": str(model_file), "preprocessing": str(spec_file)},
        input_example=input_example,
        pip_requirements=_requirements("mlflow", "ai-edge-litert", "numpy", "pandas"),
        registered_model_name=name,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.update_registered_model(
        name, description="edgetune int8 models: LiteRT pyfunc (the .tflite inside), as gated"
    )
    for key, value in {**lineage_tags(), **(tags or {})}.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def gate_tags(policy: Any) -> dict[str, str]:
    """Model-version tags recording how strict the gate was (`gate.min_accuracy`, ...)."""
    return {f"gate.{k}": str(v) for k, v in _as_plain_dict(policy).items()}


def _as_plain_dict(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def log_keras_model(model: Any, input_example: Any = None) -> None:
    """Logs a tf_keras model with MLflow's tensorflow flavor (as `float_model`) in the active run.

    Saved as H5, the format the pipeline's own model artifacts use: MLflow's default (a
    SavedModel) traces every layer's call and took seconds more per run.
    """
    import mlflow

    mlflow.tensorflow.log_model(
        model,
        name="float_model",
        input_example=input_example,
        pip_requirements=_requirements("tensorflow", "tf-keras"),
        keras_model_kwargs={"save_format": "h5"},
    )


def tag_release(bundle_path: str | os.PathLike) -> None:
    """Tags the active (deploy) run with the shipped model's sha256 and bundle version.

    That is how `edgetune trace` finds the bundle from a device's /health.
    """
    import mlflow

    from edgetune.bundle import peek_manifest
    from edgetune.manifest import MODEL_FILE
    from edgetune.trace import TAG_BUNDLE_VERSION, TAG_MODEL_SHA256

    manifest = peek_manifest(bundle_path)
    mlflow.set_tags(
        {TAG_MODEL_SHA256: manifest.files[MODEL_FILE].sha256, TAG_BUNDLE_VERSION: manifest.version}
    )


def _requirements(*packages: str) -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in packages]


def set_model_alias(
    alias: str, version: str, *, name: str = REGISTERED_MODEL, tracking_uri: str = ""
) -> None:
    """Points the registered model's `alias` (e.g. `champion`) at `version`."""
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version)


def champion_model(
    dst: str | os.PathLike, *, name: str = REGISTERED_MODEL, alias: str = "champion"
) -> tuple[str, dict[str, str], Path | None] | None:
    """The version the `champion` alias points at: its number, tags and .tflite (in `dst`).

    None when no version is the champion (a first run, or none rolled out yet).
    """
    import mlflow

    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    try:
        local = mlflow.artifacts.download_artifacts(
            f"models:/{name}/{version.version}", dst_path=str(dst)
        )
        tflite = next(iter(sorted(Path(local).rglob("*.tflite"))), None)
    except mlflow.exceptions.MlflowException:  # its files are gone: compared by tags only
        tflite = None
    return str(version.version), dict(version.tags), tflite


def record(output: StepOutput, artifact: Any = None, *, folder: str = "") -> None:
    """Logs a step's typed output in the active run; shows its metadata on the KFP artifact.

    The output's file and attachments go to MLflow (with `folder`, the whole artifact folder
    goes there instead, under that name), then its metrics, summary.json part, tags and notes.
    """
    import mlflow

    if folder:
        mlflow.log_artifacts(str(artifact.path), folder)
    else:
        mlflow.log_dict(output.to_dict(), output.FILE)
        for name in output.ATTACHMENTS:
            mlflow.log_artifact(str(Path(artifact.path) / name))
    if metrics := output.metrics():
        mlflow.log_metrics(metrics)
    if part := output.summary_part():
        log_summary_part(part)
    if tags := output.tags():
        mlflow.set_tags(tags)
    if artifact is not None:
        artifact.metadata.update(output.metadata())
    for line in output.notes():
        log.info("%s", line)


def bundle_lineage(registered_version: str = "") -> dict[str, str]:
    """What a bundle made in the active run records of its origin (see edgetune.trace)."""
    import json

    import mlflow

    from edgetune.lineage import TAG_CODE_VERSION, TAG_GIT_COMMIT, TAG_IMAGE

    client = mlflow.MlflowClient()
    parent = client.get_run(client.get_run(active_run_id()).data.tags["mlflow.parentRunId"])
    model: dict[str, Any] = {}
    selected = step_runs(parent).get("select_model")
    if selected is not None:
        with contextlib.suppress(Exception):  # a part missing leaves the zoo id out, no more
            part = client.download_artifacts(selected.info.run_id, SUMMARY_PART)
            model = json.loads(Path(part).read_text()).get("model", {})
    tags = parent.data.tags
    return {
        "tracking_uri": os.environ.get(TRACKING_STORE_ENV) or mlflow.get_tracking_uri(),
        "parent_run_id": parent.info.run_id,
        "pipeline_run_id": tags.get(TAG_PIPELINE_RUN_ID, ""),
        "git_commit": tags.get(TAG_GIT_COMMIT, ""),
        "code_version": tags.get(TAG_CODE_VERSION, ""),
        "image": tags.get(TAG_IMAGE, ""),
        "data_fingerprint": tags.get(TAG_DATA_FINGERPRINT, ""),
        "zoo_id": str(model.get("zoo_id", "")),
        "model_file_sha256": str(model.get("sha256", "")),
        "params_sha256": params_sha256(pipeline_params(parent)),
        "registered_model": f"{REGISTERED_MODEL}/{registered_version}"
        if registered_version
        else "",
    }


def close_runs(parent_run_id: str, status: str, *, children_status: str | None = None) -> int:
    """Ends the parent run and its nested runs still RUNNING; returns how many were ended.

    A step killed mid-way (SIGKILL, a lost pod) never ends its own run; whoever closes the
    pipeline run ends it, as `children_status` (default: `status`).
    """
    import mlflow

    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    running = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        client.set_terminated(run.info.run_id, children_status or status)
    if parent.info.status == "RUNNING":
        client.set_terminated(parent_run_id, status)
        return len(running) + 1
    return len(running)
