"""Where the DAG meets a Kubernetes cluster: secrets, config files, resources, retries.

Applied to the tasks with kfp-kubernetes (KFP's own extension) when the DAG is compiled for
a cluster (`edgetune compile`, the default target); `--target local` leaves it out. KFP's
resource setters take constants, so these are compile-time settings: every field declared
once here (type, default, help), the defaults overridden by a YAML file given to
`edgetune compile --cluster FILE`, for example::

    resources:
      fine_tune: {cpu_request: "2", memory_limit: 8G}
    accelerator: {type: nvidia.com/gpu, count: 1}
    retries: {ingest: 5}

What reaches a pod, and from where:
- the signing key: Secret `signing_key_secret` mounted read-only at SIGNING_MOUNT (deploy);
  run parameter signing_key=SIGNING_MOUNT/signing.key
- agent tokens: Secret `agent_tokens_secret` mounted at TOKENS_MOUNT (deploy); the fleet
  file names them `token_ref: file:/var/run/secrets/edgetune/tokens/<device>`
- fleet, devices and zoo files: ConfigMap `config_map` mounted at CONFIG_MOUNT (every task
  that reads one); run parameters fleet_file=/etc/edgetune/fleet.yaml, ...
- MLflow: MLFLOW_TRACKING_URI (and optional username/password/token) from Secret
  `mlflow_secret`; MLFLOW_EXPERIMENT_NAME a constant of the compiled pipeline
- run identity: EDGETUNE_PIPELINE_RUN_ID from the pod's `pipeline/runid` label, which the
  KFP API server puts on every pod of a run; EDGETUNE_RUN_NAME from its run-name annotation.
  Neither is a task input, so a task's cache key does not change from run to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from edgetune.config import load_yaml
from edgetune.errors import EdgetuneError
from edgetune.step_config import StepConfig

SIGNING_MOUNT = "/var/run/secrets/edgetune/signing"
TOKENS_MOUNT = "/var/run/secrets/edgetune/tokens"
CONFIG_MOUNT = "/etc/edgetune"
# The pod label the KFP API server sets to the run id on every pod of a run
# (SetPodMetadataLabels(LabelKeyWorkflowRunId)), and the run-name annotation kfp-kubernetes
# documents for use_field_path_as_env.
RUN_ID_FIELD = "metadata.labels['pipeline/runid']"
RUN_NAME_FIELD = "metadata.annotations['pipelines.kubeflow.org/run_name']"

# Environment a component reads its run context from first (components/common/tracking.py).
ENV_RUN_NAME = "EDGETUNE_RUN_NAME"
ENV_PIPELINE_RUN_ID = "EDGETUNE_PIPELINE_RUN_ID"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_EXPERIMENT = "MLFLOW_EXPERIMENT_NAME"
ENV_PARENT_RUN_ID = "EDGETUNE_PARENT_RUN_ID"

# Steps a run may need again with the same inputs: cached on content. deploy and finalize act
# on the world (devices, the run's end) and run every time.
CACHED_STEPS = (
    "ingest",
    "select_model",
    "preprocess",
    "fine_tune",
    "search_space",
    "candidate",
    "convert",
    "evaluate",
)
TRAINING_STEPS = ("fine_tune", "candidate")
# choose asks the registry which model serves now (the champion), so it runs every time; the
# steps after it take its verdict, a value, and are cached when the choice is the same.
UNCACHED_STEPS = ("choose", "deploy", "finalize")
# Steps that read a file a run parameter names (devices/zoo: select_model; fleet: deploy).
CONFIG_READERS = ("select_model", "deploy")

Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?[a-zA-Z]*$")]


class Resources(StepConfig):
    """CPU and memory a task's pod requests and may use (Kubernetes quantities)."""

    step: ClassVar[str] = "resources"

    cpu_request: Quantity = Field("500m", description="CPU the pod is guaranteed")
    cpu_limit: Quantity = Field("2", description="CPU the pod may use at most")
    memory_request: Quantity = Field("1G", description="memory the pod is guaranteed")
    memory_limit: Quantity = Field("4G", description="memory above which the pod is killed")


class Accelerator(StepConfig):
    """An accelerator for the training steps (fine_tune, the search's candidates)."""

    step: ClassVar[str] = "accelerator"

    type: str = Field("", description="resource name, e.g. nvidia.com/gpu; empty: CPU only")
    count: int = Field(1, ge=1, le=16, description="how many per training pod")


def _default_resources() -> dict[str, Resources]:
    heavy = Resources(cpu_request="2", cpu_limit="4", memory_request="4G", memory_limit="8G")
    return {"default": Resources(), **{step: heavy for step in (*TRAINING_STEPS, "convert")}}


class ClusterSettings(StepConfig):
    """How the compiled DAG's pods get their secrets, files, resources and retries."""

    step: ClassVar[str] = "cluster"

    signing_key_secret: str = Field(
        "edgetune-signing-key",
        min_length=1,
        description="Secret with the Ed25519 signing key (key signing.key), mounted for deploy",
    )
    agent_tokens_secret: str = Field(
        "edgetune-agent-tokens",
        min_length=1,
        description="Secret with one push token per device (key: device name), mounted for deploy",
    )
    config_map: str = Field(
        "edgetune-config",
        min_length=1,
        description="ConfigMap with fleet.yaml, devices.yaml, zoo files, mounted read-only",
    )
    mlflow_secret: str = Field(
        "edgetune-mlflow",
        min_length=1,
        description="Secret with tracking_uri (required), username, password, token (optional)",
    )
    experiment: str = Field("edgetune", min_length=1, description="MLflow experiment of the runs")
    resources: dict[str, Resources] = Field(
        default_factory=_default_resources,
        description="per step (ingest, fine_tune, ...) or `default`: requests and limits",
    )
    accelerator: Accelerator = Field(
        default_factory=Accelerator,
        description="an accelerator for fine_tune and the search's candidates",
    )
    retries: dict[str, Annotated[int, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: {"ingest": 3, "deploy": 2},
        description="retries per step, for transient failures (object storage, devices)",
    )
    retry_backoff_s: int = Field(30, ge=1, le=3600, description="first wait before a retry")

    def resources_for(self, step: str) -> Resources:
        """The step's own resources, else the `default` entry, else the declared default."""
        return self.resources.get(step) or self.resources.get("default") or Resources()


def load_settings(path: str | Path | None) -> ClusterSettings:
    """The declared defaults, with what the YAML file at `path` sets (nested maps merged)."""
    if path is None:
        return ClusterSettings()
    doc = load_yaml(Path(path)) or {}
    if not isinstance(doc, dict):
        raise EdgetuneError(f"{path}: expected a mapping of cluster settings")
    merged: dict[str, Any] = {}
    defaults = ClusterSettings()
    for name, value in doc.items():
        if name == "resources" and isinstance(value, dict):
            merged[name] = {
                **{k: v.model_dump() for k, v in defaults.resources.items()},
                **{
                    k: {**defaults.resources_for(k).model_dump(), **(v or {})}
                    for k, v in value.items()
                },
            }
        elif name == "retries" and isinstance(value, dict):
            merged[name] = {**defaults.retries, **value}
        else:
            merged[name] = value
    unknown = set(merged.get("resources", {})) | set(merged.get("retries", {}))
    unknown -= {*CACHED_STEPS, *UNCACHED_STEPS, "default"}
    if unknown:
        raise EdgetuneError(
            f"{path}: unknown step {sorted(unknown)[0]!r}; accepted: default, "
            + ", ".join((*CACHED_STEPS, *UNCACHED_STEPS))
        )
    try:
        return ClusterSettings(**merged)
    except EdgetuneError as e:
        raise EdgetuneError(f"{path}: {e}") from None


def wire(task: Any, step: str, settings: ClusterSettings) -> None:
    """Gives one task its run context, secrets, files, resources, accelerator and retries."""
    from kfp import kubernetes

    kubernetes.use_field_path_as_env(task, ENV_PIPELINE_RUN_ID, RUN_ID_FIELD)
    kubernetes.use_field_path_as_env(task, ENV_RUN_NAME, RUN_NAME_FIELD)
    kubernetes.use_secret_as_env(task, settings.mlflow_secret, {"tracking_uri": ENV_TRACKING_URI})
    kubernetes.use_secret_as_env(
        task,
        settings.mlflow_secret,
        {
            "username": "MLFLOW_TRACKING_USERNAME",
            "password": "MLFLOW_TRACKING_PASSWORD",
            "token": "MLFLOW_TRACKING_TOKEN",
        },
        optional=True,  # a server without auth needs none of them
    )
    task.set_env_variable(ENV_EXPERIMENT, settings.experiment)
    if step in CONFIG_READERS:
        kubernetes.use_config_map_as_volume(task, settings.config_map, CONFIG_MOUNT)
    if step == "deploy":
        kubernetes.use_secret_as_volume(task, settings.signing_key_secret, SIGNING_MOUNT)
        kubernetes.use_secret_as_volume(task, settings.agent_tokens_secret, TOKENS_MOUNT)
    resources = settings.resources_for(step)
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    if step in TRAINING_STEPS and settings.accelerator.type:
        task.set_accelerator_type(settings.accelerator.type)
        task.set_accelerator_limit(settings.accelerator.count)
    retries = settings.retries.get(step, 0)
    if retries:
        task.set_retry(retries, backoff_duration=f"{settings.retry_backoff_s}s", backoff_factor=2.0)
