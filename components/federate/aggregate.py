"""Federated averaging of head updates: checked, optionally clipped, weighted, noised.

Each device sends the change of its trained head against the bundle's head (`delta`) and
how many samples it trained on. The server averages the changes weighted by those counts
(FedAvg, McMahan et al. 2017). For differential privacy at the device level (DP-FedAvg,
McMahan et al. 2018) each change is first clipped to L2 norm `clip_norm`, and Gaussian
noise of standard deviation `noise_multiplier * clip_norm * max_weight` is added to the
average, `max_weight` being the largest device weight (the most one device can move the
average). `clip_norm` and `noise_multiplier` are the two parameters a privacy accountant
(e.g. the moments accountant) turns into an (epsilon, delta) budget over the rounds; this
module does not compute epsilon.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetune.errors import EdgetuneError


class UpdateRefused(EdgetuneError):
    """A device's update cannot be averaged; the message is the reason it is skipped."""


@dataclass(frozen=True)
class DeviceUpdate:
    """One device's head change and its weight."""

    name: str
    n_samples: int
    delta_kernel: np.ndarray
    delta_bias: np.ndarray
    metrics: dict[str, Any]

    @property
    def norm(self) -> float:
        """L2 norm of the whole change (kernel and bias together)."""
        return float(np.sqrt(np.sum(self.delta_kernel**2) + np.sum(self.delta_bias**2)))


def _floats(doc: dict[str, Any], key: str, count: int) -> np.ndarray:
    try:
        raw = base64.b64decode(doc[key], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise UpdateRefused(f"{key} missing or not base64") from None
    if len(raw) != 4 * count:
        raise UpdateRefused(f"{key} holds {len(raw) // 4} floats; the head needs {count}")
    values = np.frombuffer(raw, "<f4").astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise UpdateRefused(f"{key} holds NaN or inf")
    return values


def check_update(
    name: str, doc: Any, shape: tuple[int, int], extractor_sha256: str, base_head_sha256: str
) -> DeviceUpdate:
    """A device's /head-update answer, checked against the round's base bundle.

    Raises:
        UpdateRefused: another extractor or base head, another shape, a bad sample count,
            or weights that are not finite float32.
    """
    if not isinstance(doc, dict):
        raise UpdateRefused("the answer is not a JSON object")
    if doc.get("extractor_sha256") != extractor_sha256:
        raise UpdateRefused("trained on another extractor (the device serves another bundle)")
    if doc.get("base_head_sha256") != base_head_sha256:
        raise UpdateRefused("trained against another base head (the device serves another bundle)")
    if doc.get("shape") != list(shape) or doc.get("dtype") != "float32":
        raise UpdateRefused(
            f"head shape {doc.get('shape')} {doc.get('dtype')}; expected {list(shape)} float32"
        )
    n = doc.get("n_samples")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UpdateRefused(f"n_samples={n!r}; expected a positive integer")
    kernel = _floats(doc, "delta_kernel", shape[0] * shape[1]).reshape(shape)
    bias = _floats(doc, "delta_bias", shape[1])
    metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    return DeviceUpdate(name, n, kernel, bias, metrics)


def fedavg(
    updates: list[DeviceUpdate],
    clip_norm: float = 0.0,
    noise_multiplier: float = 0.0,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The sample-weighted average of the updates' changes, clipped and noised if asked.

    Args:
        updates: at least one checked update.
        clip_norm: each change is scaled down to this L2 norm first (0: no clipping).
        noise_multiplier: Gaussian noise std over `clip_norm * max_weight` (needs clipping).
        seed: the noise's random seed (None: fresh).

    Returns:
        (kernel change, bias change, {"weights", "norms", "clipped", "noise_std"}).

    Raises:
        EdgetuneError: no update, negative parameters, or noise without clipping.
    """
    if not updates:
        raise EdgetuneError("fedavg needs at least one update")
    if clip_norm < 0 or noise_multiplier < 0:
        raise EdgetuneError(
            f"clip_norm={clip_norm}, noise_multiplier={noise_multiplier}; both must be >= 0"
        )
    if noise_multiplier > 0 and clip_norm == 0:
        raise EdgetuneError(
            "noise_multiplier > 0 needs clip_norm > 0 (noise is scaled to the clipped norm)"
        )
    counts = np.array([u.n_samples for u in updates], np.float64)
    weights = counts / counts.sum()
    norms = [u.norm for u in updates]
    scales = [min(1.0, clip_norm / n) if clip_norm and n > 0 else 1.0 for n in norms]
    kernel = sum(w * s * u.delta_kernel for w, s, u in zip(weights, scales, updates, strict=True))
    bias = sum(w * s * u.delta_bias for w, s, u in zip(weights, scales, updates, strict=True))
    noise_std = noise_multiplier * clip_norm * float(weights.max())
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        kernel = kernel + rng.normal(0.0, noise_std, kernel.shape)
        bias = bias + rng.normal(0.0, noise_std, bias.shape)
    info = {"weights": weights.tolist(), "norms": norms,
            "clipped": sum(s < 1.0 for s in scales), "noise_std": noise_std}  # fmt: skip
    return kernel.astype(np.float32), bias.astype(np.float32), info
