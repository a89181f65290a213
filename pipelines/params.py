"""Run parameters: presets (YAML), `--set key=value` overrides, coercion and up-front checks.

Every parameter is declared once (pipelines/parameters.py). A run that would fail on a bad
value fails here, in a second, with one line naming the value, before any agent, MLflow store
or component starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import ValidationError

from edgetune.components.search.core import SearchConfig
from edgetune.config import load_yaml, packaged_file
from edgetune.errors import EdgetuneError
from edgetune.pipelines.parameters import DECLARED, MODELS, SOURCES
from edgetune.step_config import StepConfig, explain, raw_errors

# The tracking stores MLflow accepts (mlflow's tracking store registry; a test compares).
TRACKING_SCHEMES = (
    "",
    "file",
    "sqlite",
    "http",
    "https",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
    "databricks-uc",
    "uc",
)
# Parameters that name a local file when the run is local (each is read by some step).
FILE_PARAMETERS = ("devices_file", "zoo_file", "fleet_file", "signing_key")


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


def resolve_preset(name_or_path: str) -> dict[str, Any]:
    """Every parameter's value for a preset: the declared defaults, then the preset, coerced."""
    given = check_parameters(load_preset(name_or_path))
    defaults = {p.name: p.default for p in DECLARED.values() if not p.required}
    return {**defaults, **given}


def apply_overrides(params: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key=value` strings on top of `params`; values are read as YAML (numbers, booleans, maps).

    `augment.copies=0` sets one field of a mapping parameter and keeps its other fields.
    """
    out = dict(params)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EdgetuneError(f"--set {item!r}: expected KEY=VALUE")
        value = yaml.safe_load(raw) if raw.strip() else ""
        head, dot, field = key.partition(".")
        if dot:
            known = DECLARED.get(head)
            if known is None or known.annotation is not dict or not field:
                raise EdgetuneError(f"--set {item!r}: {head!r} is not a mapping parameter")
            out[head] = {**(out.get(head) or {}), field: value}
        else:
            out[key] = value
    return out


def check_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The given parameters, each coerced to its declared type (an int given for a float is a float).

    Raises:
        EdgetuneError: an unknown name, a wrong type, an out-of-range value or a missing
            required one.
    """
    unknown = sorted(set(params) - set(DECLARED))
    if unknown:
        raise EdgetuneError(
            f"unknown pipeline parameter {unknown[0]!r}; accepted: {', '.join(sorted(DECLARED))}"
        )
    for p in DECLARED.values():
        if p.required and p.name not in params:
            raise EdgetuneError(f"pipeline parameter {p.name!r} is required ({p.help})")
    return {name: DECLARED[name].coerce(value) for name, value in params.items()}


def step_configs(params: dict[str, Any]) -> dict[type[StepConfig], StepConfig]:
    """Every step model the run parameters feed, built now so a rule across fields fails now."""
    built = {}
    for model in MODELS:
        names = {f: n for n, targets in SOURCES.items() for m, f in targets if m is model}
        values = {f: params[n] for f, n in names.items() if n in params}
        try:
            with raw_errors():
                built[model] = model.model_validate(values)
        except ValidationError as e:
            where = "pipeline parameter " if e.errors()[0]["loc"] else "pipeline parameters: "
            raise EdgetuneError(where + explain(model, e, names)) from None
    return built


def validate_values(params: dict[str, Any], *, local: bool = True, data: bool = True) -> None:
    """Checks now what a run would reject later, before anything starts.

    That is the step configs, the data and tracking URIs, the device profile, the zoo id
    and (when `local`) the files parameters name.

    Args:
        params: coerced run parameters (check_parameters).
        local: the run's components run here (local-run), so local paths must exist here;
            on a cluster (submit) they are paths inside the pods, checked for form only.
        data: check data_uri too (False: the caller checks it once it has written it).
    """
    configs = step_configs(params)
    if data:
        check_data_uri(str(params.get("data_uri", "")), local=local)
    check_tracking_uri(str(params.get("tracking_uri", "")))
    if local:
        check_local_tracking_uri(str(params.get("tracking_uri", "")))
        for name in FILE_PARAMETERS:
            check_file(name, str(params.get(name) or ""))
    _check_device_and_zoo(params, local=local, search=configs.get(SearchConfig))
    if local and params.get("fleet_file"):
        from edgetune.fleet import load_fleet

        load_fleet(params["fleet_file"])
    if local and params.get("signing_key"):
        from edgetune.signing import load_private_key

        load_private_key(params["signing_key"])


def _check_device_and_zoo(
    params: dict[str, Any], *, local: bool, search: SearchConfig | None = None
) -> None:
    from edgetune.components.search.core import candidates
    from edgetune.config import device_profile
    from edgetune.zoo.registry import load_zoo

    devices = params.get("devices_file") or None
    zoo_file = params.get("zoo_file") or None
    if devices and not local:
        return  # a file in the pods: the profile is checked there
    profile = device_profile(
        params.get("device_profile", DECLARED["device_profile"].default), devices
    )
    if search is not None:  # a space the device cannot run (float16 on TFLite Micro)
        candidates(search, profile, params.get("target_sparsity", 0.5))
    if zoo_file and not local:
        return
    zoo = load_zoo(zoo_file)
    model_id = params.get("model_id") or ""
    if model_id and model_id not in zoo:
        raise EdgetuneError(f"unknown zoo id {model_id!r}; known: {', '.join(sorted(zoo))}")
    check_model_file(params, local=local)


def check_model_file(params: dict[str, Any], *, local: bool) -> None:
    """Checks that model_uri names a readable model file and that its options make sense.

    Only the file's header is read; its layers are checked by select_model, before training.
    """
    from edgetune.zoo.feature_layer import parse_normalization

    uri = str(params.get("model_uri") or "")
    for option in ("feature_layer", "model_normalization"):
        if params.get(option) and not uri:
            raise EdgetuneError(f"pipeline parameter {option} is set but model_uri is empty")
    if not uri:
        return
    if params.get("model_id"):
        raise EdgetuneError("pipeline parameters model_id and model_uri: give one model source")
    if params.get("model_normalization"):
        parse_normalization(str(params["model_normalization"]))
    path = local_data_path(uri)
    if path is None:
        import fsspec

        scheme = urlparse(uri).scheme
        if scheme not in fsspec.available_protocols():
            raise EdgetuneError(f"pipeline parameter model_uri={uri!r}: unknown scheme {scheme!r}")
    elif local:
        from edgetune.zoo.model_file import file_kind

        file_kind(path)


def check_data_uri(uri: str, *, local: bool = True) -> None:
    """A non-empty local path that exists and can be read, or a remote URI fsspec knows."""
    if not uri.strip():
        raise EdgetuneError(
            "pipeline parameter data_uri is empty; give an image folder, a table file or an fsspec URI"
        )
    path = local_data_path(uri)
    if path is None:
        _check_remote_uri(uri, local=local)
        return
    if not local and not path.is_absolute():
        raise EdgetuneError(
            f"pipeline parameter data_uri={uri!r}: a relative path means nothing to a cluster's "
            "pods; give an fsspec URI (s3://, gs://, ...) or an absolute path mounted in them"
        )
    if local and not path.exists():
        raise EdgetuneError(f"pipeline parameter data_uri={uri!r}: no such file or folder")
    if local and not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise EdgetuneError(f"pipeline parameter data_uri={uri!r}: not readable")


def _check_remote_uri(uri: str, *, local: bool) -> None:
    import fsspec

    parsed = urlparse(uri)
    if parsed.scheme not in fsspec.available_protocols():
        raise EdgetuneError(
            f"pipeline parameter data_uri={uri!r}: unknown scheme {parsed.scheme + '://'!r}; "
            "accepted: a local path or an fsspec URI (s3://, gs://, az://, http(s)://, ...)"
        )
    if not (parsed.netloc + parsed.path).strip("/"):
        raise EdgetuneError(f"pipeline parameter data_uri={uri!r}: names no bucket or path")
    if local:  # the components run here: the protocol's package must be installed here
        try:
            fsspec.get_filesystem_class(parsed.scheme)
        except (ImportError, ValueError) as e:
            raise EdgetuneError(f"pipeline parameter data_uri={uri!r}: {e}") from None


def check_tracking_uri(uri: str) -> None:
    """A URI of a tracking store MLflow accepts (a plain path is a file store)."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        scheme = ""
    if scheme not in TRACKING_SCHEMES:
        raise EdgetuneError(
            f"pipeline parameter tracking_uri={uri!r}; accepted: empty (the local default), "
            f"a path, or a URI with scheme {', '.join(s for s in TRACKING_SCHEMES if s)}"
        )
    if scheme in ("http", "https") and not urlparse(uri).netloc:
        raise EdgetuneError(f"pipeline parameter tracking_uri={uri!r}: names no host")


def check_local_tracking_uri(uri: str) -> None:
    """A SQLite or file store on this machine: its folder must exist (MLflow makes the file)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        where = Path(parsed.path[1:]) if parsed.path.startswith("/") else None
    elif scheme in ("", "file") and uri:
        where = Path(parsed.path or uri)
    else:
        return
    if where is not None and where.name != ":memory:" and not where.parent.is_dir():
        raise EdgetuneError(
            f"pipeline parameter tracking_uri={uri!r}: folder {where.parent} does not exist"
        )


def require_signing_key(params: dict[str, Any], hint: str) -> None:
    """deploy signs every bundle it ships, so a run that may deploy needs the key up front."""
    if not params.get("signing_key"):
        raise EdgetuneError(
            f"pipeline parameter signing_key is empty; deploy signs every bundle it ships: {hint}"
        )


def check_file(name: str, value: str) -> None:
    """A parameter naming a file: empty (not used) or a readable local file."""
    if not value:
        return
    path = local_data_path(value)
    if path is None:
        raise EdgetuneError(
            f"pipeline parameter {name}={value!r}: a local run reads a local file; got a remote URI"
        )
    if not path.is_file():
        raise EdgetuneError(f"pipeline parameter {name}={value!r}: no such file")
    if not os.access(path, os.R_OK):
        raise EdgetuneError(f"pipeline parameter {name}={value!r}: not readable")


def local_data_path(uri: str) -> Path | None:
    """The local path a data URI names, or None for a remote fsspec URI."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://")).expanduser()


def absolute_uri(uri: str) -> str:
    """A local path made absolute; a remote URI unchanged."""
    path = local_data_path(uri)
    return str(path.resolve()) if path is not None else uri


def resolve_file_params(params: dict[str, Any]) -> dict[str, Any]:
    """Local paths made absolute: components run in other processes, elsewhere."""
    out = dict(params)
    for key in ("data_uri", "model_uri", *FILE_PARAMETERS):
        if out.get(key):
            out[key] = absolute_uri(os.fspath(out[key]))
    return out
