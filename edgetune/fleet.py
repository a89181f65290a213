"""The fleet inventory: which devices to deploy to and where their push tokens come from.

A fleet file is YAML::

    devices:
      - name: shelf-cam-01
        url: http://10.0.0.21:8470
        token_ref: env:SHELF_CAM_01_TOKEN     # or file:tokens/shelf-cam-01 (relative to this file)
        tags: [store-12, camera]

Tokens are referenced, never written in the file, so the inventory can live in git.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgetune.config import load_yaml, require
from edgetune.errors import EdgetuneError

TOKEN_SCHEMES = ("env", "file")
_FIELDS = ("name", "url", "token_ref", "tags")


@dataclass(frozen=True)
class FleetDevice:
    """One device agent.

    Attributes:
        name: unique name in the fleet, used in reports.
        url: the agent's base URL (http or https, no trailing slash).
        token_ref: `env:VAR` or `file:/absolute/path` (relative paths are resolved on load).
        tags: free labels to group devices by.
    """

    name: str
    url: str
    token_ref: str
    tags: tuple[str, ...] = ()


def load_fleet(path: str | os.PathLike[str]) -> list[FleetDevice]:
    """Reads and validates a fleet file.

    Args:
        path: the YAML fleet file.

    Returns:
        The devices, in file order.

    Raises:
        EdgetuneError: one line naming the file, the entry, the field and what is accepted.
    """
    path = Path(path)
    doc = load_yaml(path)
    entries = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise EdgetuneError(f"{path}: expected a non-empty list under 'devices'")
    devices: list[FleetDevice] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        device = _device(entry, path, i)
        if device.name in seen:
            raise EdgetuneError(
                f"{path}: devices[{i}]: name {device.name!r} is used twice; names must be unique"
            )
        seen.add(device.name)
        devices.append(device)
    return devices


def _device(entry: Any, path: Path, index: int) -> FleetDevice:
    where = f"{path}: devices[{index}]"
    if not isinstance(entry, dict):
        raise EdgetuneError(f"{where}: expected a mapping with fields {', '.join(_FIELDS)}")
    name = require(entry, "name", str, where).strip()
    if not name:
        raise EdgetuneError(f"{where}: field 'name' is empty")
    where = f"{where} ({name})"
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise EdgetuneError(
            f"{where}: unknown field {unknown[0]!r}; accepted: {', '.join(_FIELDS)}"
        )
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise EdgetuneError(f"{where}: field 'tags'={tags!r}; expected a list of strings")
    return FleetDevice(
        name=name,
        url=_url(require(entry, "url", str, where), where),
        token_ref=_token_ref(require(entry, "token_ref", str, where), path.parent, where),
        tags=tuple(tags),
    )


def _url(url: str, where: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EdgetuneError(f"{where}: field 'url'={url!r}; expected http(s)://host[:port]")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise EdgetuneError(f"{where}: field 'url'={url!r} has an invalid port") from None
    return url.strip().rstrip("/")


def _token_ref(ref: str, base: Path, where: str) -> str:
    scheme, sep, value = ref.partition(":")
    if not sep or scheme not in TOKEN_SCHEMES or not value.strip():
        raise EdgetuneError(
            f"{where}: field 'token_ref'={ref!r}; accepted: env:VARIABLE or file:PATH"
        )
    if scheme == "file":
        # Relative to the fleet file, so the inventory and its token folder move together.
        return f"file:{(base / value.strip()).resolve()}"
    return f"env:{value.strip()}"


def resolve_token(device: FleetDevice) -> str:
    """The push token for `device`, read from its environment variable or file.

    Raises:
        EdgetuneError: the variable is unset or empty, or the file is missing or empty.
    """
    scheme, _, value = device.token_ref.partition(":")
    if scheme not in TOKEN_SCHEMES:
        raise EdgetuneError(
            f"device {device.name}: token_ref {device.token_ref!r}; accepted: env:VARIABLE or file:PATH"
        )
    if scheme == "env":
        token = os.environ.get(value, "").strip()
        if not token:
            raise EdgetuneError(f"device {device.name}: environment variable {value} is not set")
        return token
    try:
        token = Path(value).read_text().strip()
    except OSError as e:
        raise EdgetuneError(
            f"device {device.name}: cannot read token file {value} ({e.strerror or e})"
        ) from None
    if not token:
        raise EdgetuneError(f"device {device.name}: token file {value} is empty")
    return token


def select(devices: list[FleetDevice], tags: list[str] | None = None) -> list[FleetDevice]:
    """The devices carrying every tag in `tags` (all devices when `tags` is empty)."""
    wanted = set(tags or ())
    return [d for d in devices if wanted.issubset(d.tags)]
