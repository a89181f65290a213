"""Config files and the typed values read from them, validated at the boundary.

A bad value is reported with the file, the field, the value and what would be accepted.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from edgetune.errors import EdgetuneError

PACKAGED_DEVICES = "devices.yaml"
PACKAGED_ZOO = "registry.yaml"


def packaged_file(package: str, name: str) -> Path:
    """A data file installed with edgetune (configs, zoo registry, embedded weights)."""
    return Path(str(importlib.resources.files(package).joinpath(name)))


def load_yaml(path: str | os.PathLike) -> Any:
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


def require(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """d[key], checked for presence and type; the error names `where` and the field."""
    if not isinstance(d, dict) or key not in d:
        raise EdgetuneError(f"{where}: missing field {key!r}")
    value = d[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise EdgetuneError(f"{where}: field {key!r}={value!r}; expected {_kind_name(kind)}")
    if not isinstance(value, kind):
        raise EdgetuneError(f"{where}: field {key!r}={value!r}; expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


@dataclass(frozen=True)
class DeviceProfile:
    """What a class of device can hold and how fast it computes.

    Attributes:
        name: profile id, e.g. "cortex-m7".
        flash_bytes: room for the model file.
        ram_bytes: room for the tensor arena (activations) at inference.
        latency_budget_ms: the longest single inference the application accepts.
        macs_per_ms: sustained int8 multiply-accumulates per millisecond on one core;
            used to estimate latency from a model's MACs before anything is built.
    """

    name: str
    flash_bytes: int
    ram_bytes: int
    latency_budget_ms: float
    macs_per_ms: float
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "device profile") -> DeviceProfile:
        profile = cls(
            name=require(d, "name", str, where),
            flash_bytes=require(d, "flash_bytes", int, where),
            ram_bytes=require(d, "ram_bytes", int, where),
            latency_budget_ms=float(require(d, "latency_budget_ms", (int, float), where)),
            macs_per_ms=float(require(d, "macs_per_ms", (int, float), where)),
            description=str(d.get("description", "")),
        )
        for field in ("flash_bytes", "ram_bytes", "latency_budget_ms", "macs_per_ms"):
            if getattr(profile, field) <= 0:
                raise EdgetuneError(
                    f"{where}: field {field!r}={getattr(profile, field)}; must be > 0"
                )
        return profile


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
    profiles = load_device_profiles(path)
    if name not in profiles:
        raise EdgetuneError(
            f"unknown device profile {name!r}; known: {', '.join(sorted(profiles))}"
        )
    return profiles[name]
