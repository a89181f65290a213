"""The fleet inventory: which devices to deploy to and where their push tokens come from.

A fleet file is YAML::

    devices:
      - name: shelf-cam-01
        url: http://10.0.0.21:8470
        token_ref: env:SHELF_CAM_01_TOKEN     # or file:tokens/shelf-cam-01 (relative to this file)
        tags: [store-12, camera]
      - name: gate-01
        url: https://10.0.0.22:8470
        token_ref: file:tokens/gate-01
        ca_file: certs/fleet-ca.pem           # verifies the agent's TLS certificate

Tokens are referenced, never written in the file, so the inventory can live in git.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, StrictStr, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass

from edgetune.config import STRICT, load_yaml, validate
from edgetune.errors import EdgetuneError

TOKEN_SCHEMES = ("env", "file")


@dataclass(frozen=True, config=STRICT)
class FleetDevice:
    """One device agent.

    Attributes:
        name: unique name in the fleet, used in reports.
        url: the agent's base URL (http or https, no trailing slash).
        token_ref: `env:VAR` or `file:/absolute/path` (relative paths are resolved on load).
        tags: free labels to group devices by.
        ca_file: PEM certificate(s) the agent's TLS certificate must chain to (https only;
            relative to the fleet file); default: the system's trusted CAs.
    """

    name: Annotated[StrictStr, Field(min_length=1)]
    url: StrictStr
    token_ref: StrictStr
    tags: tuple[StrictStr, ...] = ()
    ca_file: StrictStr | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, ca_file: str | None, info: ValidationInfo) -> str | None:
        if ca_file is None:
            return None
        base = Path(info.context["base"]) if info.context and "base" in info.context else Path()
        path = (base / ca_file.strip()).resolve()
        if not path.is_file():
            raise ValueError(f"no such file {path}; expected a PEM CA certificate")
        if not info.data.get("url", "").startswith("https://"):
            raise ValueError("a CA file needs an https:// url")
        return str(path)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("expected a non-empty name")
        return name.strip()

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host[:port]")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("invalid port; expected http(s)://host[:port]") from None
        return url.strip().rstrip("/")

    @field_validator("token_ref")
    @classmethod
    def _token_ref(cls, ref: str, info: ValidationInfo) -> str:
        scheme, sep, value = ref.partition(":")
        if not sep or scheme not in TOKEN_SCHEMES or not value.strip():
            raise ValueError("accepted: env:VARIABLE or file:PATH")
        if scheme == "file" and info.context and "base" in info.context:
            # Relative to the fleet file, so the inventory and its token folder move together.
            return f"file:{(Path(info.context['base']) / value.strip()).resolve()}"
        return f"{scheme}:{value.strip()}"


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
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{path}: devices[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        device = validate(FleetDevice, entry, where, context={"base": path.parent})
        if device.name in seen:
            raise EdgetuneError(
                f"{where}: name {device.name!r} is used twice; names must be unique"
            )
        seen.add(device.name)
        devices.append(device)
    return devices


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
