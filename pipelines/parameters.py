"""Every run parameter, declared once.

A run parameter is a field of a typed model: a step's own config in its core
(`FineTuneConfig.head_epochs`, with type, default, range and help), or, for what belongs to
the run as a whole, a field of `RunSettings` below. `SOURCES` maps each run parameter name to
the field(s) it feeds, explicitly: `prune_epochs` → `PruneConfig.epochs`, and a shared one such
as `seed` feeds several steps. From this the DAG signature takes its defaults, presets and
`--set` values are coerced and checked, `edgetune params` prints the table, and the README's
table is generated; tests fail when any of them disagrees.

To add a run parameter: a `Field(default, ge=/gt=/le=/lt=, description=...)` on the step's
config model in its core (or on RunSettings); one line in SOURCES; `name: type = D.name` in the
DAG signature, passed to the task; then paste `edgetune params --format markdown` into the
README. A field a run should not set goes into FIXED instead.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from edgetune.components.convert.core import ConvertConfig
from edgetune.components.deploy.core import DeployConfig
from edgetune.components.evaluate.core import EvaluateConfig, GatePolicy
from edgetune.components.fine_tune.core import FineTuneConfig
from edgetune.components.ingest.core import IngestConfig
from edgetune.components.preprocess.core import PreprocessConfig
from edgetune.components.prune.core import PruneConfig
from edgetune.components.qat.core import QatConfig
from edgetune.components.search.core import SearchConfig
from edgetune.errors import EdgetuneError
from edgetune.step_config import (
    StepConfig,
    accepted,
    explain,
    is_model,
    kind,
    raw_errors,
    value_range,
)


class RunSettings(StepConfig):
    """What belongs to the run as a whole: the data, tracking, the device, the zoo, the fleet."""

    step: ClassVar[str] = "run"

    data_uri: str = Field(
        min_length=1,
        description="the data: an image folder (a sub-folder per class) or a Parquet/CSV "
        "table; a local path or an fsspec URI (s3://, gs://, ...)",
    )
    run_name: str = Field("", description="the run's name in MLflow; empty: generated")
    tracking_uri: str = Field(
        "", description="MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, else ./mlflow.db"
    )
    experiment: str = Field("edgetune", min_length=1, description="MLflow experiment")
    data_version: str = Field(
        "",
        description="what identifies the data's content, in ingest's cache key; empty: "
        "local-run and submit fill in a fingerprint of the source's file listing",
    )
    code_version: str = Field(
        "",
        description="what identifies the code, in every cached step's key; empty: local-run "
        "and submit fill in the version, git commit and uncommitted changes",
    )
    device_profile: str = Field(
        "cortex-m7", min_length=1, description="the target device's profile name"
    )
    devices_file: str = Field(
        "", description="YAML of device profiles; empty: the packaged configs/devices.yaml"
    )
    zoo_file: str = Field("", description="model zoo registry YAML; empty: the packaged zoo")
    model_id: str = Field("", description="the zoo entry to fine-tune; empty: the best fit")
    model_uri: str = Field(
        "",
        description="your own whole model file instead of the zoo: Keras 2 .h5, Keras 3 "
        ".keras/.h5 or a SavedModel folder; a local path or an fsspec URI",
    )
    feature_layer: str = Field(
        "",
        description="with model_uri: the layer the new head goes after; empty: the last "
        "pooling/flatten layer or the input of the last Dense (logged)",
    )
    model_normalization: str = Field(
        "",
        description="with model_uri: input scaling, unit (0..1), symmetric (-1..1), raw "
        "(0..255) or SCALE,OFFSET; empty: raw if the model rescales inside, else unit",
    )
    domain: str = Field(
        "handwritten-digits", description="prefer zoo entries pretrained on this domain"
    )
    allow_download: bool = Field(
        False, description="allow zoo entries whose weights must be downloaded"
    )
    fleet_file: str = Field(
        "", description="YAML list of device agents to deploy to; empty: no device"
    )
    signing_key: str = Field(
        "", description="Ed25519 private key (PEM) that signs the bundle; deploy needs it"
    )


Target = tuple[type[StepConfig], str]

# Run parameter name → the model field(s) it feeds, in the DAG signature's order.
SOURCES: dict[str, tuple[Target, ...]] = {
    "data_uri": ((RunSettings, "data_uri"),),
    "run_name": ((RunSettings, "run_name"),),
    "tracking_uri": ((RunSettings, "tracking_uri"),),
    "experiment": ((RunSettings, "experiment"),),
    "data_version": ((RunSettings, "data_version"),),
    "code_version": ((RunSettings, "code_version"),),
    "device_profile": ((RunSettings, "device_profile"),),
    "devices_file": ((RunSettings, "devices_file"),),
    "zoo_file": ((RunSettings, "zoo_file"),),
    "model_id": ((RunSettings, "model_id"),),
    "model_uri": ((RunSettings, "model_uri"),),
    "feature_layer": ((RunSettings, "feature_layer"),),
    "model_normalization": ((RunSettings, "model_normalization"),),
    "domain": ((RunSettings, "domain"),),
    "allow_download": ((RunSettings, "allow_download"),),
    "val_fraction": ((IngestConfig, "val_fraction"),),
    "test_fraction": ((IngestConfig, "test_fraction"),),
    "max_quarantine_fraction": ((IngestConfig, "max_quarantine_fraction"),),
    "min_per_class": ((IngestConfig, "min_per_class"),),
    "max_pixels": ((IngestConfig, "max_pixels"),),
    "fold_case": ((IngestConfig, "fold_case"),),
    "label_map": ((IngestConfig, "label_map"),),
    "augment": ((PreprocessConfig, "augment"),),
    "head_epochs": ((FineTuneConfig, "head_epochs"),),
    "unfreeze_epochs": ((FineTuneConfig, "unfreeze_epochs"),),
    "unfreeze_top_layers": ((FineTuneConfig, "unfreeze_top_layers"),),
    "head_learning_rate": ((FineTuneConfig, "head_learning_rate"),),
    "unfreeze_learning_rate": ((FineTuneConfig, "unfreeze_learning_rate"),),
    "batch_size": (
        (FineTuneConfig, "batch_size"),
        (PruneConfig, "batch_size"),
        (QatConfig, "batch_size"),
    ),
    "patience": ((FineTuneConfig, "patience"),),
    "target_sparsity": ((PruneConfig, "target_sparsity"),),
    "prune_epochs": ((PruneConfig, "epochs"),),
    "prune_learning_rate": ((PruneConfig, "learning_rate"),),
    "qat_epochs": ((QatConfig, "epochs"),),
    "qat_learning_rate": ((QatConfig, "learning_rate"),),
    "representative_samples": ((ConvertConfig, "representative_samples"),),
    "search_enabled": ((SearchConfig, "enabled"),),
    "search_sparsity": ((SearchConfig, "sparsity"),),
    "search_quantization": ((SearchConfig, "quantization"),),
    "search_students": ((SearchConfig, "students"),),
    "distill_alpha": ((SearchConfig, "distill_alpha"),),
    "distill_temperature": ((SearchConfig, "distill_temperature"),),
    "distill_epochs": ((SearchConfig, "distill_epochs"),),
    "champion_margin_points": ((SearchConfig, "champion_margin_points"),),
    "min_accuracy": ((GatePolicy, "min_accuracy"),),
    "max_drop_points": ((GatePolicy, "max_drop_points"),),
    "latency_runs": ((EvaluateConfig, "latency_runs"),),
    "fleet_file": ((RunSettings, "fleet_file"),),
    "signing_key": ((RunSettings, "signing_key"),),
    "smoke_samples": ((DeployConfig, "smoke_samples"),),
    "deploy_timeout_s": ((DeployConfig, "timeout_s"),),
    "rollout_waves": ((DeployConfig, "rollout_waves"),),
    "max_failure_fraction": ((DeployConfig, "max_failure_fraction"),),
    "rollout_soak_s": ((DeployConfig, "soak_s"),),
    "push_concurrency": ((DeployConfig, "push_concurrency"),),
    "rollout_tags": ((DeployConfig, "rollout_tags"),),
    "deploy_mode": ((DeployConfig, "mode"),),
    "channel_uri": ((DeployConfig, "channel_uri"),),
    "channel_waves": ((DeployConfig, "channel_waves"),),
    "personal_head": ((DeployConfig, "personal_head"),),
    "seed": (
        (FineTuneConfig, "seed"),  # first: its help text is the one shown
        (PreprocessConfig, "seed"),
        (PruneConfig, "seed"),
        (QatConfig, "seed"),
        (ConvertConfig, "seed"),
    ),
}

# Model fields a run does not set: the step's own choice, fixed for every run.
FIXED: frozenset[Target] = frozenset(
    {(FineTuneConfig, "dropout"), (QatConfig, "preserve_sparsity")}
)

MODELS: tuple[type[StepConfig], ...] = tuple(
    dict.fromkeys(model for targets in SOURCES.values() for model, _ in targets)
)


@dataclass(frozen=True)
class Parameter:
    """One run parameter: its name and the model field(s) it feeds; the first one describes it."""

    name: str
    targets: tuple[Target, ...]

    @property
    def field(self) -> FieldInfo:
        """The pydantic field that describes the parameter (its first target's)."""
        model, field = self.targets[0]
        return model.model_fields[field]

    @property
    def annotation(self) -> type:
        """The type the DAG declares: a nested model travels as a dict."""
        ann = self.field.annotation
        if is_model(ann):
            return dict
        return typing.get_origin(ann) or ann  # KFP takes dict and list, not dict[str, str]

    @property
    def required(self) -> bool:
        """Whether a run must give the parameter (it has no default)."""
        return self.field.is_required()

    @property
    def default(self) -> Any:
        """The default value, a nested model dumped to a dict."""
        value = self.field.get_default(call_default_factory=True)
        return value.model_dump() if isinstance(value, BaseModel) else value

    @property
    def help(self) -> str:
        """The parameter's one-line help."""
        return self.field.description or ""

    @property
    def accepted(self) -> str:
        """What values the parameter accepts, in words (e.g. a range)."""
        return accepted(self.field)

    @cached_property
    def _adapter(self) -> TypeAdapter:
        ann, rules = self.field.annotation, self.field.metadata
        if is_model(ann):
            return TypeAdapter(ann)  # the model's own config: strict
        typed = Annotated[ann, *rules] if rules else ann
        return TypeAdapter(typed, config=ConfigDict(strict=True))

    def coerce(self, value: Any) -> Any:
        """The value as its declared type (an int given for a float is a float), or EdgetuneError."""
        try:
            with raw_errors():
                out = self._adapter.validate_python(value)
        except ValidationError as e:
            ann = self.field.annotation
            if is_model(ann):
                raise EdgetuneError(f"pipeline parameter {self.name}: {explain(ann, e)}") from None
            raise EdgetuneError(
                f"pipeline parameter {self.name}={value!r}; accepted: {self.accepted}"
            ) from None
        return out.model_dump() if isinstance(out, BaseModel) else out


DECLARED: dict[str, Parameter] = {name: Parameter(name, t) for name, t in SOURCES.items()}

# The DAG's defaults (`head_epochs: int = D.head_epochs`); required parameters have none.
D = types.SimpleNamespace(**{p.name: p.default for p in DECLARED.values() if not p.required})


def rows() -> list[dict[str, str]]:
    """One row per run parameter (a nested policy adds a row per field): the table's content."""
    out = []
    for p in DECLARED.values():
        nested = p.field.annotation
        shown = "required" if p.required else "see below" if is_model(nested) else _shown(p.default)
        out.append(_row(p.name, p.field, p.annotation, shown))
        if is_model(nested):
            for name, info in nested.model_fields.items():
                default = _shown(info.get_default(call_default_factory=True))
                out.append(_row(f"{p.name}.{name}", info, info.annotation, default))
    return out


def _shown(default: Any) -> str:
    """A default as a user would type it: YAML, with the empty string visible."""
    if isinstance(default, str):
        return default or "''"
    return yaml.safe_dump(default, default_flow_style=True).removesuffix("\n...\n").strip()


def _row(name: str, info: FieldInfo, annotation: Any, default: str) -> dict[str, str]:
    return {
        "parameter": name,
        "type": kind(annotation),
        "default": default,
        "range": value_range(info),
        "help": info.description or "",
    }


def table(markdown: bool = False) -> str:
    """Every run parameter with its type, default, range and help, as text or Markdown."""
    body = rows()
    header = list(body[0])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for row in body:
            cells = [f"`{row['parameter']}`", *(row[h].replace("|", "\\|") for h in header[1:])]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    widths = {h: max(len(h), *(len(r[h]) for r in body)) for h in header[:-1]}
    lines = ["  ".join([*(h.ljust(widths[h]) for h in header[:-1]), header[-1]])]
    for row in body:
        lines.append("  ".join([*(row[h].ljust(widths[h]) for h in header[:-1]), row["help"]]))
    return "\n".join(lines) + "\n"
