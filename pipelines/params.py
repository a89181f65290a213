"""Run parameters: presets (YAML), `--set key=value` overrides, and up-front validation.

A run that would fail on a bad value fails here, in a second, with one line naming the
value, instead of minutes later inside a component.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import yaml

from edgetune.config import load_yaml, packaged_file
from edgetune.errors import EdgetuneError


def pipeline_parameters() -> dict[str, Any]:
    """The pipeline's parameters and their defaults (required ones map to inspect.Parameter.empty)."""
    from edgetune.pipelines.edgetune_pipeline import edgetune_pipeline

    signature = inspect.signature(edgetune_pipeline.pipeline_func)
    return {name: p.default for name, p in signature.parameters.items()}


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A packaged preset by name (configs/presets/<name>.yaml) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = packaged_file("edgetune.configs", f"presets/{name_or_path}.yaml")
        if not path.is_file():
            presets = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise EdgetuneError(
                f"unknown preset {name_or_path!r}; packaged: {', '.join(presets)}, or give a YAML path"
            )
    doc = load_yaml(path) or {}
    if not isinstance(doc, dict):
        raise EdgetuneError(f"{path}: expected a mapping of pipeline parameters")
    return doc


def apply_overrides(params: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key=value` strings on top of `params`; values are read as YAML (numbers, booleans, maps)."""
    out = dict(params)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EdgetuneError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def check_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Rejects unknown keys, values of the wrong type and missing required parameters."""
    known = pipeline_parameters()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise EdgetuneError(
            f"unknown pipeline parameter {unknown[0]!r}; accepted: {', '.join(sorted(known))}"
        )
    for name, default in known.items():
        if name not in params:
            if default is inspect.Parameter.empty:
                raise EdgetuneError(f"pipeline parameter {name!r} is required")
            continue
        value = params[name]
        if default not in (None, inspect.Parameter.empty) and not _same_kind(value, default):
            raise EdgetuneError(
                f"pipeline parameter {name}={value!r}; expected {type(default).__name__}"
            )
    return params


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def validate_values(params: dict[str, Any]) -> None:
    """Builds every config object the components will build, so bad values fail now."""
    from edgetune.components.evaluate.core import GatePolicy
    from edgetune.components.fine_tune.core import FineTuneConfig
    from edgetune.components.preprocess.core import AugmentPolicy
    from edgetune.components.prune.core import PruneConfig
    from edgetune.components.qat.core import QatConfig
    from edgetune.config import device_profile
    from edgetune.zoo.registry import load_zoo

    default_profile = pipeline_parameters()["device_profile"]  # the DAG's default, not a copy
    device_profile(
        params.get("device_profile", default_profile), params.get("devices_file") or None
    )
    zoo = load_zoo(params.get("zoo_file") or None)
    model_id = params.get("model_id") or ""
    if model_id and model_id not in zoo:
        raise EdgetuneError(f"unknown zoo id {model_id!r}; known: {', '.join(sorted(zoo))}")
    AugmentPolicy.from_dict(params.get("augment"))
    for cls, prefix in (
        (FineTuneConfig, ""),
        (PruneConfig, "prune_"),
        (QatConfig, "qat_"),
        (GatePolicy, ""),
    ):
        _config(cls, params, prefix)
    for name in ("latency_runs", "representative_samples", "smoke_samples"):
        if name in params and params[name] < 1:
            raise EdgetuneError(f"pipeline parameter {name}={params[name]}; must be >= 1")
    fleet = params.get("fleet_file")
    if fleet:
        from edgetune.fleet import load_fleet

        load_fleet(fleet)


# Parameters every training step shares, named without a step prefix.
_SHARED = ("batch_size", "seed", "target_sparsity")


def _config(cls: type, params: dict[str, Any], prefix: str) -> Any:
    """cls built from the run parameters that feed it (`prune_epochs` → PruneConfig.epochs)."""
    values = {}
    for field in inspect.signature(cls).parameters:
        key = field if field in _SHARED or not prefix else f"{prefix}{field}"
        if key in params:
            values[field] = params[key]
    return cls(**values)


def local_data_path(uri: str) -> Path | None:
    """The local path a data URI names, or None for a remote fsspec URI."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://")).expanduser()


def absolute_uri(uri: str) -> str:
    path = local_data_path(uri)
    return str(path.resolve()) if path is not None else uri


def resolve_file_params(params: dict[str, Any]) -> dict[str, Any]:
    """Local paths made absolute: components run in other processes, elsewhere."""
    out = dict(params)
    for key in ("data_uri", "devices_file", "zoo_file", "fleet_file", "signing_key"):
        if out.get(key):
            out[key] = absolute_uri(os.fspath(out[key]))
    return out
