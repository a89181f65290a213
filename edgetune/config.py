"""Config files and the typed values read from them, validated at the boundary by pydantic.

A bad value is reported in one line with the file, the field, the value and what would be
accepted: `validate` turns pydantic's ValidationError into an EdgetuneError.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, Field, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic import ValidationError as _ValidationError
from pydantic.dataclasses import dataclass

from edgetune.errors import EdgetuneError

PACKAGED_DEVICES = "devices.yaml"
PACKAGED_ZOO = "registry.yaml"
# Unknown fields are refused: a misspelt key would otherwise be silently ignored.
STRICT = ConfigDict(extra="forbid")

T = TypeVar("T")
# pydantic says "Input should be a valid integer"; edgetune's errors say "must be ...".
_SHOULD = re.compile(r"^\w+ should")
PositiveInt = Annotated[StrictInt, Field(gt=0)]
PositiveFloat = Annotated[StrictFloat, Field(gt=0)]


def packaged_file(package: str, name: str) -> Path:
    """A data file installed with edgetune (configs, zoo registry, embedded weights)."""
    return Path(str(importlib.resources.files(package).joinpath(name)))


def load_yaml(path: str | os.PathLike) -> Any:
    """The parsed YAML document at `path`; EdgetuneError names the file (and line) if not."""
    path = Path(path)
    if not path.is_file():
        raise EdgetuneError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise EdgetuneError(
            f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})"
        ) from None


@functools.cache
def _adapter(kind: type) -> TypeAdapter:
    return TypeAdapter(kind)


def validate(
    kind: type[T],
    data: Any,
    where: str,
    *,
    context: dict[str, Any] | None = None,
    error: type[EdgetuneError] = EdgetuneError,
) -> T:
    """`data` validated as `kind` (a pydantic dataclass or model).

    Args:
        kind: the type to build.
        data: the raw value (usually a dict read from YAML or JSON).
        where: names the source in the error, e.g. "devices.yaml: devices[1]".
        context: passed to the type's validators (e.g. the folder relative paths start at).
        error: the EdgetuneError subclass to raise.

    Raises:
        EdgetuneError: one line naming `where`, the field, the value and what is accepted.
    """
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping with fields {', '.join(_field_names(kind))}")
    try:
        return _adapter(kind).validate_python(data, context=context)
    except _ValidationError as e:
        raise error(describe(e, where, kind)) from None


def describe(e: _ValidationError, where: str, kind: type | None = None) -> str:
    """The first problem of a ValidationError as one line (how many more, if any)."""
    errors = e.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return f"{where}: missing field {field!r}{more}"
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        accepted = f"; accepted: {', '.join(_field_names(kind))}" if kind else ""
        return f"{where}: unknown field {field!r}{accepted}{more}"
    message = _SHOULD.sub("must", first["msg"].removeprefix("Value error, "))
    value = repr(first["input"])
    value = value if len(value) <= 80 else value[:77] + "..."
    return f"{where}: field {field!r}={value}; {message}{more}"


def _field_names(kind: type) -> list[str]:
    if dataclasses.is_dataclass(kind):
        return [f.name for f in dataclasses.fields(kind)]
    return list(getattr(kind, "model_fields", {}))


@dataclass(frozen=True, config=STRICT)
class DeviceProfile:
    """What a class of device can hold and how fast it computes.

    Attributes:
        name: profile id, e.g. "cortex-m7".
        flash_bytes: room for the model file.
        ram_bytes: room for the tensor arena (activations) at inference.
        latency_budget_ms: the longest single inference the application accepts.
        macs_per_ms: sustained int8 multiply-accumulates per millisecond on one core;
            used to estimate latency from a model's MACs before anything is built.
        description: for people.
        runtime: what runs the model there: "tflite-micro" (a microcontroller, where the
            arena and the op set of TFLite Micro decide) or "litert".
        active_power_mw: the device's power while it computes, for an energy-per-inference
            estimate (latency x power); None when unknown.
        active_power_source: where `active_power_mw` comes from, for people.
    """

    name: Annotated[StrictStr, Field(min_length=1)]
    flash_bytes: PositiveInt
    ram_bytes: PositiveInt
    latency_budget_ms: PositiveFloat
    macs_per_ms: PositiveFloat
    description: StrictStr = ""
    runtime: Literal["tflite-micro", "litert"] = "litert"
    active_power_mw: PositiveFloat | None = None
    active_power_source: StrictStr = ""

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON values (what `from_dict` reads back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "device profile") -> DeviceProfile:
        """A validated profile; EdgetuneError names `where`, the field and the value."""
        return validate(cls, d, where)


def load_device_profiles(path: str | os.PathLike | None = None) -> dict[str, DeviceProfile]:
    """Device profiles by name, from `path` or the packaged configs/devices.yaml."""
    path = Path(path) if path else packaged_file("edgetune.configs", PACKAGED_DEVICES)
    doc = load_yaml(path)
    entries = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise EdgetuneError(f"{path}: expected a non-empty list under 'devices'")
    profiles: dict[str, DeviceProfile] = {}
    for i, entry in enumerate(entries):
        profile = DeviceProfile.from_dict(entry, where=f"{path}: devices[{i}]")
        if profile.name in profiles:
            raise EdgetuneError(f"{path}: device profile {profile.name!r} is defined twice")
        profiles[profile.name] = profile
    return profiles


def device_profile(name: str, path: str | os.PathLike | None = None) -> DeviceProfile:
    """The profile called `name`; EdgetuneError lists the known names if there is none."""
    profiles = load_device_profiles(path)
    if name not in profiles:
        raise EdgetuneError(
            f"unknown device profile {name!r}; known: {', '.join(sorted(profiles))}"
        )
    return profiles[name]
