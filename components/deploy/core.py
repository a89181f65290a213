"""Rolling a signed bundle out to a fleet of device agents, wave by wave, one status per device.

Each device is handled as `device.DeviceRollout` says: read what it serves, push with
compare-and-swap, keep the new model only if the device then reports its sha256 `ok`, else
roll it back by a signed order naming what it served before. Devices go in waves
(`rollout_waves`, e.g. "1,10%,50%,100%"); within a wave they are pushed in parallel and one
device's failure never stops the others, but a wave whose failures exceed
`max_failure_fraction` stops the rollout: its deployed devices are rolled back and later
waves are not touched. The report says what every device serves, by sha256.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, field_validator, model_validator

from edgetune import files
from edgetune.bundle import peek_manifest
from edgetune.channel import parse_waves
from edgetune.components.common.outputs import StepOutput
from edgetune.components.deploy.device import (
    BUNDLE_CONTENT_TYPE,
    DEPLOYED,
    FAILED,
    ROLLED_BACK,
    UNCHANGED,
    DeviceRollout,
    Target,
)
from edgetune.components.deploy.waves import (
    Progress,
    abort_wave,
    plan_waves,
    recheck,
    run_wave,
    wave_problem,
)
from edgetune.errors import EdgetuneError
from edgetune.fleet import FleetDevice, load_fleet, select
from edgetune.signing import KeyInput, load_private_key
from edgetune.step_config import StepConfig

__all__ = ["BUNDLE_CONTENT_TYPE", "DEPLOYED", "FAILED", "ROLLED_BACK", "SKIPPED", "UNCHANGED",
           "DeployConfig", "RolloutReport", "plan_waves", "rollout"]  # fmt: skip

log = logging.getLogger(__name__)

SKIPPED = "skipped"
CHAMPION_ALIAS = "champion"


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
    rollout_waves: str = Field(
        "100%",
        min_length=1,
        description="cumulative wave sizes, counts or percentages, e.g. 1,10%,50%,100%",
    )
    max_failure_fraction: float = Field(
        1.0,
        ge=0,
        le=1,
        description="a wave with a larger share of failed devices stops the rollout and rolls it back",
    )
    soak_s: float = Field(
        0.0, ge=0, description="seconds to wait after each wave before checking it again"
    )
    push_concurrency: int = Field(16, ge=1, description="devices pushed to at the same time")
    rollout_tags: str = Field(
        "", description="deploy only to fleet devices carrying all these tags (comma-separated)"
    )
    mode: str = Field(
        "push",
        description="push: to the fleet file's devices, wave by wave; pull: publish a signed "
        "channel at channel_uri that devices poll (edgetune agent serve --pull)",
    )
    channel_uri: str = Field(
        "", description="deploy_mode=pull: the channel, a folder or fsspec URI (s3://bucket/x)"
    )
    channel_waves: str = Field(
        "100",
        min_length=1,
        description="deploy_mode=pull: PERCENT[@SECONDS] of devices (by id hash) allowed to "
        "install, widening with time since publication, e.g. 10,50@600,100@1800",
    )

    personal_head: str = Field(
        "reset",
        description="what a device does with the head it trained itself when this bundle "
        "installs: reset (serve the bundle's head) or keep (only if the extractor is unchanged)",
    )

    @field_validator("personal_head")
    @classmethod
    def _personal_head(cls, value: str) -> str:
        if value not in ("keep", "reset"):
            raise ValueError(f"personal_head {value!r}; accepted: keep or reset")
        return value

    @field_validator("rollout_waves")
    @classmethod
    def _waves(cls, waves: str) -> str:
        problem = wave_problem(waves)
        if problem:
            raise ValueError(problem)
        return waves

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: str) -> str:
        if mode not in ("push", "pull"):
            raise ValueError(f"deploy_mode {mode!r}; accepted: push or pull")
        return mode

    @field_validator("channel_waves")
    @classmethod
    def _channel_waves(cls, waves: str) -> str:
        try:
            parse_waves(waves, "channel_waves")
        except EdgetuneError as e:
            raise ValueError(str(e)) from None
        return waves

    @model_validator(mode="after")
    def _channel_for_pull(self) -> DeployConfig:
        if self.mode == "pull" and not self.channel_uri:
            raise ValueError("deploy_mode=pull needs channel_uri (a folder or fsspec URI)")
        if self.mode == "push" and self.channel_uri:
            raise ValueError("channel_uri is set but deploy_mode is push; set deploy_mode=pull")
        return self


@dataclass(frozen=True)
class RolloutReport(StepOutput):
    """deploy's output: what a rollout did on each device.

    Each device's status is decided by the model sha256 it reports.

    Attributes:
        version: the bundle version rolled out.
        devices: one dict per device, in fleet order: `name`, `url`, `wave`, `status`
            (deployed, unchanged, rolled_back, failed or skipped), `reason`, `seconds`,
            `bytes_sent`, `served_version`, `served_sha256`, `served_sequence` (what the
            device serves afterwards, when known), `before_version`, `before_sha256`.
        model_sha256: the sha256 of the bundle's model.
        sequence: the bundle's signed sequence.
        waves: per wave, its devices and failures, and whether it stopped the rollout.
        stopped: why the rollout stopped early, or None.
        mode: `push` (to the devices above) or `pull` (published to a channel).
        channel: with `pull`, the channel's URI and the signed channel manifest written.
    """

    FILE: ClassVar[str] = files.DEPLOY_REPORT

    version: str
    devices: list[dict[str, Any]]
    model_sha256: str = ""
    sequence: int = 0
    waves: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    mode: str = "push"
    channel: dict[str, Any] | None = None

    @property
    def succeeded(self) -> int:
        """Devices that report serving the new model's sha256 (deployed or unchanged)."""
        return sum(
            d["status"] in (DEPLOYED, UNCHANGED) and d.get("served_sha256") == self.model_sha256
            for d in self.devices
        )

    @property
    def failed(self) -> int:
        """How many devices the rollout failed on."""
        return sum(d["status"] == FAILED for d in self.devices)

    @property
    def rolled_back(self) -> int:
        """How many devices were rolled back to the version they served before."""
        return sum(d["status"] == ROLLED_BACK for d in self.devices)

    @property
    def skipped(self) -> int:
        """How many devices the rollout did not reach (it stopped at an earlier wave)."""
        return sum(d["status"] == SKIPPED for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        """The `deploy` section of summary.json."""
        return {
            "mode": self.mode,
            "version": self.version,
            "model_sha256": self.model_sha256,
            "sequence": self.sequence,
            "devices": [dict(d) for d in self.devices],
            "succeeded": self.succeeded,
            "failed": self.failed,
            "rolled_back": self.rolled_back,
            "skipped": self.skipped,
            "waves": [dict(w) for w in self.waves],
            "stopped": self.stopped,
            "channel": self.channel,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutReport:
        """The report from deploy_report.json's content."""
        return cls(
            version=d["version"],
            devices=[dict(x) for x in d["devices"]],
            model_sha256=d.get("model_sha256", ""),
            sequence=d.get("sequence", 0),
            waves=[dict(w) for w in d.get("waves", [])],
            stopped=d.get("stopped"),
            mode=d.get("mode", "push"),
            channel=d.get("channel"),
        )

    @property
    def serves_everywhere(self) -> bool:
        """Every device of a non-empty fleet reports serving the new model's sha256."""
        return bool(self.devices) and self.succeeded == len(self.devices)

    def aliases(self, registered_version: str) -> dict[str, str]:
        """Registry aliases to point at the deployed model version.

        `champion`, only when every device serves it (an empty fleet proves nothing).
        """
        return {CHAMPION_ALIAS: registered_version} if self.serves_everywhere else {}

    def check(self) -> None:
        """Raises unless every device of the fleet serves the new model (an empty fleet passes).

        Raises:
            EdgetuneError: one line naming each device that failed, was rolled back or skipped.
        """
        if self.succeeded == len(self.devices):
            return
        bad = [
            f"{d['name']}: {d['status']} ({d['reason']})"
            for d in self.devices
            if d["status"] not in (DEPLOYED, UNCHANGED)
            or d.get("served_sha256") != self.model_sha256
        ]
        stopped = f"; stopped at {self.stopped}" if self.stopped else ""
        raise EdgetuneError(
            f"rollout of {self.version} reached {self.succeeded}/{len(self.devices)} devices"
            f"{stopped}; {'; '.join(bad[:5])}"
        )

    def metrics(self) -> dict[str, float]:
        """How many devices succeeded, failed, were rolled back and were skipped."""
        return {"succeeded": self.succeeded, "failed": self.failed,
                "rolled_back": self.rolled_back, "skipped": self.skipped}  # fmt: skip

    def summary_part(self) -> dict[str, Any]:
        """The whole report as summary.json's `deploy` section."""
        return {"deploy": self.to_dict()}

    def metadata(self) -> dict[str, Any]:
        """The mode, the version rolled out and the number of devices (or the channel)."""
        where = {"channel": self.channel["uri"]} if self.channel else {}
        return {"mode": self.mode, "version": self.version, "devices": len(self.devices), **where}


def rollout_to_fleet(
    bundle_path: str | os.PathLike,
    fleet_file: str,
    *,
    timeout_s: float = 30.0,
    signing_key: str | None = None,
    tags: str = "",
    **waves: Any,
) -> RolloutReport:
    """`rollout` to the devices of a fleet file ("" for none), one log line per device.

    Only the devices carrying every tag in `tags` (comma-separated; "" for all), in file order.

    `signing_key` signs rollback orders; `waves` are `rollout`'s wave options.
    """
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    devices = select(load_fleet(fleet_file), wanted) if fleet_file else []
    return rollout(bundle_path, devices, timeout_s=timeout_s, progress=_log_progress,
                   signing_key=signing_key or None, **waves)  # fmt: skip


def _log_progress(device: dict[str, Any]) -> None:
    wave = f"wave {device['wave']}: " if "wave" in device else ""
    log.info("%s%s: %s %s", wave, device["name"], device["status"], device.get("reason") or "")


def rollout(
    bundle_path: str | Path,
    devices: Sequence[FleetDevice],
    *,
    timeout_s: float = 30.0,
    progress: Progress | None = None,
    max_workers: int = 16,
    signing_key: Ed25519PrivateKey | KeyInput | None = None,
    waves: str = "100%",
    max_failure_fraction: float = 1.0,
    soak_s: float = 0.0,
) -> RolloutReport:
    """Deploys a bundle wave by wave and reports what each device serves afterwards.

    Args:
        bundle_path: the signed bundle (see `edgetune.bundle.build_bundle`).
        devices: the agents to deploy to, e.g. from `edgetune.fleet.load_fleet`.
        timeout_s: limit for each HTTP request; a push includes the device's smoke test.
        progress: called with each device's result as it finishes, in the calling thread.
        max_workers: devices pushed to at the same time (push concurrency).
        signing_key: signs rollback orders (a device that fails its smoke test, or a wave
            that is stopped, goes back to what it served); without it nothing is rolled back.
        waves: cumulative wave sizes, counts or percentages, e.g. "1,10%,50%,100%".
        max_failure_fraction: a wave whose share of failed or rolled-back devices exceeds
            this stops the rollout: its deployed devices are rolled back, later waves skipped.
        soak_s: seconds to wait after a wave before checking its devices again.

    Returns:
        The report; devices in the order given.

    Raises:
        EdgetuneError: the bundle cannot be read, or a bad `waves` (no device is contacted).
    """
    data = Path(bundle_path).read_bytes()
    target = Target.of(data, peek_manifest(data))
    key = _private_key(signing_key)
    plan = plan_waves(len(devices), waves)
    results: list[dict[str, Any]] = [
        {"name": d.name, "url": d.url, "status": SKIPPED, "reason": "", "bytes_sent": 0}
        for d in devices
    ]
    contexts = _tls_contexts(devices)
    summary, stopped = [], None
    for number, (lo, hi) in enumerate(plan, start=1):
        runs = [
            DeviceRollout(d, target, timeout_s, contexts[d.ca_file], key) for d in devices[lo:hi]
        ]
        run_wave(runs, results, lo, number, max_workers, progress)
        if soak_s > 0:
            time.sleep(soak_s)
            recheck(runs, results, lo, timeout_s, contexts)
        failures = sum(r["status"] in (FAILED, ROLLED_BACK) for r in results[lo:hi])
        wave = {"wave": number, "devices": [d.name for d in devices[lo:hi]], "failures": failures}
        summary.append(wave)
        if failures > max_failure_fraction * (hi - lo):
            stopped = (
                f"wave {number}: {failures} of {hi - lo} devices failed, above "
                f"max_failure_fraction={max_failure_fraction:g}; later waves untouched"
            )
            wave["stopped"] = True
            abort_wave(runs, results, lo, stopped)
            for r in results[hi:]:
                r["reason"] = f"not attempted: {stopped}"
            break
    return RolloutReport(target.version, results, target.model_sha256, target.sequence,
                         summary, stopped)  # fmt: skip


def _tls_contexts(devices: Sequence[FleetDevice]) -> dict[str | None, ssl.SSLContext]:
    # One context per CA file for the whole rollout: building one costs tens of milliseconds.
    contexts: dict[str | None, ssl.SSLContext] = {None: httpx.create_ssl_context()}
    for ca_file in {d.ca_file for d in devices if d.ca_file}:
        contexts[ca_file] = ssl.create_default_context(cafile=ca_file)
    return contexts


def _private_key(key: Ed25519PrivateKey | KeyInput | None) -> Ed25519PrivateKey | None:
    if key is None or isinstance(key, Ed25519PrivateKey):
        return key
    return load_private_key(key)
