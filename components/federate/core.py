"""federate: one round of federated averaging over the fleet's personal heads.

A round asks every device to train its head on its own samples (`POST /personalize`), then
for the result (`GET /head-update`: the head's change against the bundle's head, its
sample count and the extractor's sha256; never a sample). Late or bad answers are skipped
with the reason; fewer than `min_devices` usable updates stop the round. The average
(`aggregate.fedavg`) is added to the bundle's head, scored with the frozen int8 extractor
on the pipeline's test split, gated like any model (a minimum accuracy, and at most
`max_drop_points` below the head it would replace, the champion), and shipped as a new
signed bundle that serves the split model, through deploy's rollout.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
from pydantic import Field

from edgetune import files
from edgetune.bundle import VerifiedBundle
from edgetune.components.federate.aggregate import DeviceUpdate, UpdateRefused, check_update, fedavg
from edgetune.errors import EdgetuneError
from edgetune.fleet import FleetDevice, resolve_token
from edgetune.head_training import accuracy
from edgetune.split import Head, embeddings
from edgetune.step_config import StepConfig

log = logging.getLogger(__name__)


class FederateConfig(StepConfig):
    """One federated round: who must answer, how updates are bounded, what the gate asks."""

    step: ClassVar[str] = "federate"

    min_devices: int = Field(2, ge=1, description="usable updates a round needs, else it stops")
    clip_norm: float = Field(
        0.0, ge=0, description="DP: each update's L2 norm is clipped to this (0: off)"
    )
    noise_multiplier: float = Field(
        0.0, ge=0, description="DP: Gaussian noise std over clip_norm x the largest device weight"
    )
    seed: int = Field(0, ge=0, description="seeds the DP noise")
    timeout_s: float = Field(60.0, gt=0, description="seconds each device may take to answer")
    train_first: bool = Field(True, description="ask each device to personalize before collecting")
    min_accuracy: float = Field(
        0.0, ge=0, le=1, description="test accuracy the averaged head must reach"
    )
    max_drop_points: float = Field(
        1.0, ge=0, description="most accuracy points it may lose against the bundle's head"
    )


@dataclass
class RoundReport:
    """What one round did (metrics and reasons only).

    Attributes:
        asked: devices asked.
        updates: per answering device, its sample count, update norm and local metrics.
        skipped: per skipped device, the reason.
        accuracy_before: the bundle's head on the test split (with the frozen extractor).
        accuracy_after: the averaged head on the same split.
        aggregate: weights, norms, clipped count, noise std.
        gate: blessed and one reason per check.
        stopped: why the round stopped before averaging, or None.
    """

    asked: int
    updates: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    aggregate: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report, JSON-ready."""
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """MLflow metrics of the round."""
        out = {"devices_asked": self.asked, "devices_answered": len(self.updates),
               "devices_skipped": len(self.skipped),
               "samples": sum(u["n_samples"] for u in self.updates),
               "bytes_received": sum(u["bytes_sent"] for u in self.updates)}  # fmt: skip
        if self.accuracy_before is not None:
            out["accuracy_before"] = self.accuracy_before
        if self.accuracy_after is not None:
            out["accuracy_after"] = self.accuracy_after
            out["blessed"] = int(bool(self.gate.get("blessed")))
        for u in self.updates:
            out[f"{u['name']}_n_samples"] = u["n_samples"]
            out[f"{u['name']}_update_norm"] = u["norm"]
            for k in ("before", "after"):
                if isinstance(u["metrics"].get(k), int | float):
                    out[f"{u['name']}_local_{k}"] = u["metrics"][k]
        return out


def collect(
    devices: list[FleetDevice], base: VerifiedBundle, config: FederateConfig
) -> tuple[list[DeviceUpdate], list[dict[str, str]], dict[str, int]]:
    """Every device's checked update; the devices skipped with the reason; bytes each sent."""
    split = base.manifest.split
    shape = (split.embedding_dim, split.classes)
    extractor_sha = base.manifest.files[split.extractor].sha256
    head_sha = base.manifest.files[split.head].sha256
    updates, skipped, sent = [], [], {}
    for device in devices:
        try:
            doc, sent[device.name] = _ask(device, config)
            updates.append(check_update(device.name, doc, shape, extractor_sha, head_sha))
        except (UpdateRefused, EdgetuneError) as e:
            skipped.append({"name": device.name, "reason": str(e)})
        except httpx.HTTPError as e:
            skipped.append({"name": device.name, "reason": f"no answer ({type(e).__name__}: {e})"})
    return updates, skipped, sent


def _ask(device: FleetDevice, config: FederateConfig) -> tuple[Any, int]:
    headers = {"Authorization": f"Bearer {resolve_token(device)}"}
    verify = device.ca_file or True
    with httpx.Client(timeout=config.timeout_s, verify=verify, headers=headers) as client:
        if config.train_first:
            trained = client.post(f"{device.url}/personalize")
            if trained.status_code not in (200, 422):  # 422: too few samples; an older head may do
                raise UpdateRefused(
                    f"personalize answered {trained.status_code}: {_detail(trained)}"
                )
        answer = client.get(f"{device.url}/head-update")
    if answer.status_code != 200:
        raise UpdateRefused(f"head-update answered {answer.status_code}: {_detail(answer)}")
    try:
        return answer.json(), len(answer.content)
    except ValueError:
        raise UpdateRefused("head-update answer is not JSON") from None


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", ""))[:200]
    except (ValueError, AttributeError):
        return answer.text[:200]


def base_head(base: VerifiedBundle) -> Head:
    """The bundle's own head (what every update is a change of)."""
    split = base.manifest.split
    if split is None:
        raise EdgetuneError(f"bundle {base.version} has no split model; nothing to federate")
    return Head.from_bytes(base.files[split.head], split.head)


def extractor_embeddings(base: VerifiedBundle, x: np.ndarray) -> np.ndarray:
    """Embeddings of model-ready inputs `x` by the bundle's frozen int8 extractor (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter

    extractor = base.files[base.manifest.split.extractor]
    interpreter = Interpreter(model_content=extractor, num_threads=1)
    interpreter.allocate_tensors()
    return embeddings(interpreter, x)


def head_accuracy(base: VerifiedBundle, head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """`head` on the bundle's frozen int8 extractor, scored on model-ready inputs `x`."""
    return accuracy(head, extractor_embeddings(base, x), y)


def judge(before: float, after: float, config: FederateConfig) -> dict[str, Any]:
    """The round's gate: the minimum accuracy, and the drop against the bundle's head."""
    drop = round((before - after) * 100.0, 9)
    checks = [
        (after >= config.min_accuracy,
         f"averaged head accuracy {after:.2%} {'>=' if after >= config.min_accuracy else '<'} minimum {config.min_accuracy:.2%}"),
        (drop <= config.max_drop_points,
         f"averaged head loses {drop:.2f} points against the bundle's head ({before:.2%}); allowed {config.max_drop_points:.2f}"),
    ]  # fmt: skip
    return {"blessed": all(ok for ok, _ in checks),
            "reasons": [f"{'pass' if ok else 'FAIL'}: {why}" for ok, why in checks]}  # fmt: skip


def federate_round(
    base: VerifiedBundle,
    devices: list[FleetDevice],
    x_test: np.ndarray,
    y_test: np.ndarray,
    config: FederateConfig,
) -> tuple[RoundReport, Head | None]:
    """Collects, averages and judges one round; returns the report and the new head if blessed.

    Raises:
        EdgetuneError: the bundle has no split model.
    """
    start = base_head(base)
    report = RoundReport(asked=len(devices))
    updates, report.skipped, sent = collect(devices, base, config)
    report.updates = [{"name": u.name, "n_samples": u.n_samples, "norm": u.norm,
                       "bytes_sent": sent[u.name], "metrics": u.metrics} for u in updates]  # fmt: skip
    for s in report.skipped:
        log.info("federate: skipped %s: %s", s["name"], s["reason"])
    report.accuracy_before = head_accuracy(base, start, x_test, y_test)
    if len(updates) < config.min_devices:
        report.stopped = (f"{len(updates)} usable updates of {len(devices)} devices; "
                          f"min_devices={config.min_devices}")  # fmt: skip
        return report, None
    kernel, bias, report.aggregate = fedavg(updates, config.clip_norm, config.noise_multiplier,
                                            config.seed)  # fmt: skip
    averaged = Head(start.kernel + kernel, start.bias + bias)
    report.accuracy_after = head_accuracy(base, averaged, x_test, y_test)
    report.gate = judge(report.accuracy_before, report.accuracy_after, config)
    return report, averaged if report.gate["blessed"] else None


def write_report(report: RoundReport, out: str | os.PathLike) -> Path:
    """Writes the round's report as JSON (atomically)."""
    return files.write_json(out, report.to_dict())


def smoke_expected(base: VerifiedBundle, head: Head) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's smoke pixels and the classes the extractor with `head` gives them here."""
    from edgetune.preprocessing import normalize

    pixels, _ = base.samples()
    return pixels, head.predict(extractor_embeddings(base, normalize(pixels, base.manifest.spec)))
