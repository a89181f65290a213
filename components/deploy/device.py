"""One device's part of a rollout, decided by what the device says it serves (by sha256).

1. `GET /health`: what the device serves (version, model sha256, sequence, etag).
2. Already the new model's sha256 and `ok`: `unchanged`, nothing sent. A device that has
   accepted a sequence at or above the bundle's (a newer rollout got there first) is not
   pushed to: `failed`, never a downgrade.
3. `PUT /bundle` with `If-Match: <etag>`: the device installs only if nobody changed it
   since step 1 (compare-and-swap), else 412 and `failed`.
4. `GET /health` again: `deployed` only when it serves the new sha256 and is `ok`.
   Otherwise a signed rollback order names the version it served before (and that
   version's model sha256), again with If-Match: `rolled_back`, or `failed` if that fails.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgetune.errors import EdgetuneError
from edgetune.fleet import FleetDevice, resolve_token
from edgetune.manifest import Manifest, sign_rollback_order

DEPLOYED = "deployed"
UNCHANGED = "unchanged"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
BUNDLE_CONTENT_TYPE = "application/x-tar"


@dataclass(frozen=True)
class Target:
    """The bundle being rolled out, and what identifies it on a device."""

    data: bytes
    version: str
    sequence: int
    model_sha256: str

    @classmethod
    def of(cls, data: bytes, manifest: Manifest) -> Target:
        """The target for a bundle's bytes, identified by its signed manifest."""
        return cls(data, manifest.version, manifest.sequence, manifest.served_sha256)


class _Refused(Exception):
    """The device answered, but not as hoped; the message is the report's reason."""


class _Busy(_Refused):
    """Another install was running (429) or the device changed under us (412): try again."""


ATTEMPTS = 5  # of the whole conversation, when the device was busy or changed meanwhile


class DeviceRollout:
    """The health → compare-and-swap push → health → (signed rollback) conversation."""

    def __init__(
        self,
        device: FleetDevice,
        target: Target,
        timeout_s: float,
        tls: ssl.SSLContext,
        signing_key: Ed25519PrivateKey | None,
    ) -> None:
        self.device, self.target = device, target
        self.timeout_s, self.tls, self.signing_key = timeout_s, tls, signing_key
        self.bytes_sent = 0
        self.before: dict[str, Any] = {}
        self.served: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        """Never raises: every failure becomes this device's `failed` status and reason."""
        start = time.perf_counter()
        try:
            with httpx.Client(
                base_url=self.device.url, timeout=self.timeout_s, verify=self.tls
            ) as client:
                status, reason = self._converse_until_settled(client)
        except httpx.TransportError as e:
            status, reason = (
                FAILED,
                f"unreachable: {self.device.url} ({str(e) or type(e).__name__})",
            )
        except (_Refused, EdgetuneError) as e:
            status, reason = FAILED, str(e)
        except Exception as e:  # one device's surprise must not end the rollout
            status, reason = FAILED, f"unexpected {type(e).__name__}: {e}"
        return {
            "name": self.device.name,
            "url": self.device.url,
            "status": status,
            "reason": reason,
            "seconds": round(time.perf_counter() - start, 3),
            "bytes_sent": self.bytes_sent,
            "served_version": self.served.get("version"),
            "served_sha256": self.served.get("model_sha256"),
            "served_sequence": self.served.get("sequence"),
            "before_version": self.before.get("version"),
            "before_sha256": self.before.get("model_sha256"),
        }

    def _converse_until_settled(self, client: httpx.Client) -> tuple[str, str]:
        # Another deployer's push in flight is not a failure of ours: read the device again
        # (it may now serve a newer sequence, which we then leave alone) and retry.
        for attempt in range(ATTEMPTS):
            try:
                return self._converse(client)
            except _Busy:
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    def _converse(self, client: httpx.Client) -> tuple[str, str]:
        target = self.target
        before = self.before = self._health(client)
        if _serves(before, target):
            return (
                UNCHANGED,
                f"already serving {target.model_sha256[:12]} ({before.get('version')})",
            )
        if (before.get("sequence") or 0) >= target.sequence:
            return FAILED, (
                f"device accepted sequence {before.get('sequence')} >= this bundle's "
                f"{target.sequence} (serves {before.get('version')}); an older bundle is never pushed"
            )
        auth = {"Authorization": f"Bearer {resolve_token(self.device)}"}
        self.bytes_sent = len(target.data)
        pushed = client.put(
            "/bundle",
            content=target.data,
            headers={**auth, "Content-Type": BUNDLE_CONTENT_TYPE, **_if_match(before)},
        )
        self._expect_ok(pushed, "push")
        after = self._health(client)
        if _serves(after, target):
            return DEPLOYED, ""
        why = _why_unhealthy(after, target)
        if after.get("model_sha256") != target.model_sha256:
            return FAILED, why  # someone else's model is there now: not ours to roll back
        return self.roll_back(client, auth, after, why)

    def roll_back(
        self, client: httpx.Client, auth: dict[str, str], current: dict[str, Any], why: str
    ) -> tuple[str, str]:
        """Returns the device to what it served before, by a signed order naming it."""
        before = self.before
        if not before.get("version") or not before.get("model_sha256"):
            return FAILED, f"{why}; cannot roll back: nothing was served before"
        if self.signing_key is None:
            return FAILED, f"{why}; cannot roll back: no signing key for a rollback order"
        order = sign_rollback_order(self.signing_key, before["version"], before["model_sha256"])
        answer = client.post("/rollback", content=order, headers={**auth, **_if_match(current)})
        if answer.status_code in (409, 412):
            return FAILED, f"{why}; cannot roll back: {_detail(answer)}"
        self._expect_ok(answer, "rollback")
        self._health(client)
        return ROLLED_BACK, why

    def abort(self, why: str) -> dict[str, Any]:
        """Rolls a `deployed` device back to what it served before (its wave was stopped)."""
        try:
            with httpx.Client(
                base_url=self.device.url, timeout=self.timeout_s, verify=self.tls
            ) as client:
                current = self._health(client)
                if current.get("model_sha256") != self.target.model_sha256:
                    status, reason = (
                        FAILED,
                        f"{why}; not rolled back: it no longer serves this bundle",
                    )
                else:
                    auth = {"Authorization": f"Bearer {resolve_token(self.device)}"}
                    status, reason = self.roll_back(client, auth, current, why)
        except (httpx.TransportError, _Refused, EdgetuneError) as e:
            status, reason = FAILED, f"{why}; rollback failed: {e}"
        return {"status": status, "reason": reason, "served_version": self.served.get("version"),
                "served_sha256": self.served.get("model_sha256"),
                "served_sequence": self.served.get("sequence")}  # fmt: skip

    def _health(self, client: httpx.Client) -> dict[str, Any]:
        answer = client.get("/health")
        self._expect_ok(answer, "health check")
        self.served = answer.json()
        return self.served

    def _expect_ok(self, answer: httpx.Response, what: str) -> None:
        if answer.status_code == 401:
            raise _Refused(f"token refused by {self.device.name}")
        if answer.status_code in (412, 429):
            raise _Busy(f"{what} refused by {self.device.name}: it changed or was busy during "
                        f"the rollout ({_detail(answer)})")  # fmt: skip
        if answer.status_code != 200:
            raise _Refused(f"{what} refused by {self.device.name}: {_detail(answer)}")


def _serves(health: dict[str, Any], target: Target) -> bool:
    return health.get("model_sha256") == target.model_sha256 and health.get("status") == "ok"


def _if_match(health: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": health["etag"]} if health.get("etag") else {}


def _why_unhealthy(health: dict[str, Any], target: Target) -> str:
    smoke = health.get("smoke") or {}
    if health.get("model_sha256") == target.model_sha256 and smoke:
        return f"smoke agreement {smoke['agreement']:.2f} < {smoke['min_agreement']:.2f}"
    return (
        f"device serves {health.get('version')} ({health.get('status')}, "
        f"sha256 {str(health.get('model_sha256'))[:12]}) after the push of {target.version}"
    )


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    return f"{answer.status_code} {detail or answer.text[:200] or answer.reason_phrase}"
