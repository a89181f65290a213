"""Rolling a signed bundle out to a fleet of device agents, one status per device.

Per device: ask `/health`; if it already serves this version and is `ok`, send nothing
(`unchanged`). Otherwise push the bundle, ask `/health` again, and keep the new version only
if the device reports it `ok`; a degraded or wrong version is rolled back on the device
(`rolled_back`). Anything else is `failed`, with the reason. One device's failure never
stops the others: each device is handled on its own worker thread with its own connection.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from edgetune import files
from edgetune.bundle import peek_manifest
from edgetune.components.common.outputs import StepOutput
from edgetune.errors import EdgetuneError
from edgetune.fleet import FleetDevice, load_fleet, resolve_token
from edgetune.step_config import StepConfig

DEPLOYED = "deployed"
UNCHANGED = "unchanged"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
BUNDLE_CONTENT_TYPE = "application/x-tar"
CHAMPION_ALIAS = "champion"

Progress = Callable[[dict[str, Any]], None]


class DeployConfig(StepConfig):
    """How deploy smoke-tests and pushes the bundle."""

    step: ClassVar[str] = "deploy"

    smoke_samples: int = Field(
        16, ge=1, description="test images in the bundle, which each device must classify as here"
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="seconds allowed for each HTTP request to a device (a push includes its smoke test)",
    )


@dataclass(frozen=True)
class RolloutReport(StepOutput):
    """What a rollout did on each device: deploy's output.

    Attributes:
        version: the bundle version rolled out.
        devices: one dict per device, in fleet order: `name`, `url`, `status` (deployed,
            unchanged, rolled_back or failed), `reason`, `seconds`, `bytes_sent`,
            `served_version` (what the device serves afterwards, when known).
    """

    FILE: ClassVar[str] = files.DEPLOY_REPORT

    version: str
    devices: list[dict[str, Any]]

    @property
    def succeeded(self) -> int:
        """Devices serving the new version: deployed plus unchanged."""
        return sum(d["status"] in (DEPLOYED, UNCHANGED) for d in self.devices)

    @property
    def failed(self) -> int:
        return sum(d["status"] == FAILED for d in self.devices)

    @property
    def rolled_back(self) -> int:
        return sum(d["status"] == ROLLED_BACK for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        """The `deploy` section of summary.json."""
        return {
            "version": self.version,
            "devices": [dict(d) for d in self.devices],
            "succeeded": self.succeeded,
            "failed": self.failed,
            "rolled_back": self.rolled_back,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutReport:
        return cls(version=d["version"], devices=[dict(x) for x in d["devices"]])

    @property
    def serves_everywhere(self) -> bool:
        """Every device of a non-empty fleet serves the new version."""
        return bool(self.devices) and self.succeeded == len(self.devices)

    def aliases(self, registered_version: str) -> dict[str, str]:
        """Registry aliases to point at the deployed model version: `champion`, only when
        every device serves it (an empty fleet proves nothing)."""
        return {CHAMPION_ALIAS: registered_version} if self.serves_everywhere else {}

    def check(self) -> None:
        """Raises unless every device of the fleet serves the version (an empty fleet passes).

        Raises:
            EdgetuneError: one line naming each device that failed or was rolled back.
        """
        if self.succeeded == len(self.devices):
            return
        bad = [
            f"{d['name']}: {d['status']} ({d['reason']})"
            for d in self.devices
            if d["status"] in (FAILED, ROLLED_BACK)
        ]
        raise EdgetuneError(
            f"rollout of {self.version} reached {self.succeeded}/{len(self.devices)} devices; {'; '.join(bad)}"
        )

    def metrics(self) -> dict[str, float]:
        return {"succeeded": self.succeeded, "failed": self.failed, "rolled_back": self.rolled_back}

    def summary_part(self) -> dict[str, Any]:
        return {"deploy": self.to_dict()}

    def metadata(self) -> dict[str, Any]:
        return {"version": self.version, "devices": len(self.devices)}


def rollout_to_fleet(
    bundle_path: str | os.PathLike, fleet_file: str, *, timeout_s: float = 30.0
) -> RolloutReport:
    """`rollout` to every device of a fleet file ("" for none), one log line per device."""
    devices = load_fleet(fleet_file) if fleet_file else []
    return rollout(bundle_path, devices, timeout_s=timeout_s, progress=_print_progress)


def _print_progress(device: dict[str, Any]) -> None:
    print(f"{device['name']}: {device['status']} {device.get('reason') or ''}", flush=True)


def rollout(
    bundle_path: str | Path,
    devices: Sequence[FleetDevice],
    *,
    timeout_s: float = 30.0,
    progress: Progress | None = None,
    max_workers: int = 16,
) -> RolloutReport:
    """Deploys a bundle to every device and reports each device's outcome.

    Args:
        bundle_path: the signed bundle (see `edgetune.bundle.build_bundle`).
        devices: the agents to deploy to, e.g. from `edgetune.fleet.load_fleet`.
        timeout_s: limit for each HTTP request; a push includes the device's smoke test.
        progress: called with each device's result as it finishes, in the calling thread.
        max_workers: devices handled at the same time.

    Returns:
        The report; devices in the order given.

    Raises:
        EdgetuneError: the bundle cannot be read (no device is contacted then).
    """
    data = Path(bundle_path).read_bytes()
    version = peek_manifest(data).version
    results: list[dict[str, Any]] = [{} for _ in devices]
    # One TLS context for the whole rollout: building one costs tens of milliseconds.
    tls = httpx.create_ssl_context()
    if devices:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(devices)))) as pool:
            futures = {
                pool.submit(_DeviceRollout(device, data, version, timeout_s, tls).run): i
                for i, device in enumerate(devices)
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress:
                    progress(results[futures[future]])
    return RolloutReport(version=version, devices=results)


class _Refused(Exception):
    """The device answered, but not as hoped; the message is the report's reason."""


class _DeviceRollout:
    """The health → push → health → (rollback) conversation with one device."""

    def __init__(
        self, device: FleetDevice, data: bytes, version: str, timeout_s: float, tls: ssl.SSLContext
    ) -> None:
        self.device, self.data, self.version = device, data, version
        self.timeout_s, self.tls = timeout_s, tls
        self.bytes_sent = 0
        self.served_version: str | None = None

    def run(self) -> dict[str, Any]:
        """Never raises: every failure becomes this device's `failed` status and reason."""
        start = time.perf_counter()
        try:
            with httpx.Client(
                base_url=self.device.url, timeout=self.timeout_s, verify=self.tls
            ) as client:
                status, reason = self._converse(client)
        except httpx.TransportError as e:
            status, reason = FAILED, f"unreachable: {self.device.url} ({_describe(e)})"
        except (_Refused, EdgetuneError) as e:
            status, reason = FAILED, str(e)
        except Exception as e:  # noqa: BLE001 - one device's surprise must not end the rollout
            status, reason = FAILED, f"unexpected {type(e).__name__}: {e}"
        return {
            "name": self.device.name,
            "url": self.device.url,
            "status": status,
            "reason": reason,
            "seconds": round(time.perf_counter() - start, 3),
            "bytes_sent": self.bytes_sent,
            "served_version": self.served_version,
        }

    def _converse(self, client: httpx.Client) -> tuple[str, str]:
        health = self._health(client)
        if health.get("version") == self.version and health.get("status") == "ok":
            return UNCHANGED, f"already serving {self.version}"
        token = resolve_token(self.device)
        auth = {"Authorization": f"Bearer {token}"}
        self.bytes_sent = len(self.data)
        pushed = client.put(
            "/bundle", content=self.data, headers={**auth, "Content-Type": BUNDLE_CONTENT_TYPE}
        )
        self._expect_ok(pushed, "push")
        health = self._health(client)
        if health.get("version") == self.version and health.get("status") == "ok":
            return DEPLOYED, ""
        return self._roll_back(client, auth, _why_unhealthy(health, self.version))

    def _roll_back(self, client: httpx.Client, auth: dict[str, str], why: str) -> tuple[str, str]:
        answer = client.post("/rollback", headers=auth)
        if answer.status_code == 409:
            return FAILED, f"{why}; cannot roll back: {_detail(answer)}"
        self._expect_ok(answer, "rollback")
        self.served_version = answer.json().get("version")
        return ROLLED_BACK, why

    def _health(self, client: httpx.Client) -> dict[str, Any]:
        answer = client.get("/health")
        self._expect_ok(answer, "health check")
        health = answer.json()
        self.served_version = health.get("version")
        return health

    def _expect_ok(self, answer: httpx.Response, what: str) -> None:
        if answer.status_code == 401:
            raise _Refused(f"token refused by {self.device.name}")
        if answer.status_code != 200:
            raise _Refused(f"{what} refused by {self.device.name}: {_detail(answer)}")


def _why_unhealthy(health: dict[str, Any], version: str) -> str:
    smoke = health.get("smoke") or {}
    if health.get("version") == version and health.get("status") == "degraded" and smoke:
        return f"smoke agreement {smoke['agreement']:.2f} < {smoke['min_agreement']:.2f}"
    return f"device serves {health.get('version')} ({health.get('status')}) after the push of {version}"


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    return f"{answer.status_code} {detail or answer.text[:200] or answer.reason_phrase}"


def _describe(error: httpx.TransportError) -> str:
    return str(error) or type(error).__name__
