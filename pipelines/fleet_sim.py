"""A simulated fleet's private data: each device's own shifted slice of the training images.

Devices differ the way writers and cameras do: rotated strokes, thicker or thinner strokes,
lower contrast, and a skewed mix of classes. `make federate-local` and the federated
benchmark give each local agent such a slice as the samples it keeps to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("rotate", "thick", "thin", "contrast", "imbalance")


@dataclass(frozen=True)
class DeviceData:
    """One device's samples (uint8 pixels, labels) and what shifts them."""

    name: str
    kind: str
    pixels: np.ndarray
    labels: np.ndarray


def _each(pixels: np.ndarray, change) -> np.ndarray:
    out = np.empty_like(pixels)
    for i, p in enumerate(pixels):
        image = Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p)
        out[i] = np.asarray(change(image), np.uint8).reshape(p.shape)
    return out


def shift(pixels: np.ndarray, kind: str, strength: float = 1.0) -> np.ndarray:
    """The images as a device of `kind` sees them (imbalance changes the class mix, not pixels).

    Args:
        pixels: uint8 [N, H, W, C].
        kind: one of KINDS.
        strength: 1.0 is the default shift (rotate: 25 degrees; contrast: to 35%).
    """
    if kind == "rotate":
        angle = 25.0 * strength
        return _each(pixels, lambda im: im.rotate(angle, resample=Image.Resampling.BILINEAR))
    if kind == "thick":
        return _each(pixels, lambda im: im.filter(ImageFilter.MaxFilter(3)))
    if kind == "thin":
        return _each(pixels, lambda im: im.filter(ImageFilter.MinFilter(3)))
    if kind == "contrast":
        factor = max(0.05, 1.0 - 0.65 * strength)
        return np.clip(pixels.astype(np.float32) * factor + 20, 0, 255).astype(np.uint8)
    if kind == "imbalance":
        return pixels.copy()
    raise ValueError(f"shift kind {kind!r}; accepted: {', '.join(KINDS)}")


def device_slices(
    pixels: np.ndarray, labels: np.ndarray, n_devices: int, per_device: int, seed: int = 0
) -> list[DeviceData]:
    """`n_devices` disjoint slices of `per_device` images, device i shifted by KINDS[i % 5].

    The imbalance device draws 70% of its images from a third of the classes.
    """
    rng = np.random.default_rng(seed)
    free = rng.permutation(len(labels))  # images no device has yet, in random order
    classes = np.unique(labels)
    out = []
    for i in range(n_devices):
        kind = KINDS[i % len(KINDS)]
        if kind == "imbalance":
            favoured = np.isin(labels[free], classes[: max(1, len(classes) // 3)])
            n_fav = int(0.7 * per_device)
            first = free[favoured][:n_fav]  # as many as there are, the rest from other classes
            pick = np.concatenate([first, free[~favoured][: per_device - len(first)]])
        else:
            pick = free[:per_device]
        free = free[~np.isin(free, pick)]
        pick = rng.permutation(pick)
        strength = 1.0 + 0.25 * (i // len(KINDS))  # later devices of a kind shift further
        data = shift(pixels[pick], kind, strength)
        out.append(DeviceData(f"device-{i + 1}", kind, data, labels[pick]))
    return out
