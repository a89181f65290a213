"""select_model: the most accurate zoo backbone that fits the device, and why the others do not."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from edgetune import files
from edgetune.components.common.outputs import StepOutput
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError
from edgetune.zoo.registry import ZooEntry, weights_problem

# An int8 .tflite holds about one byte per weight plus per-channel scales, int32 biases and
# the graph itself; measured on the embedded backbone (convert's report), 1.1 x params +
# 24 KiB covers it.
INT8_BYTES_PER_PARAM = 1.1
INT8_FIXED_BYTES = 24 * 1024


@dataclass(frozen=True)
class Candidate:
    """One zoo entry judged against the device."""

    id: str
    fits: bool
    reasons: tuple[str, ...]
    estimated_flash_bytes: int
    estimated_ram_bytes: int
    estimated_latency_ms: float
    top1: float
    domain: str
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The verdict on one zoo entry, as written into selection.json."""
        return {
            "id": self.id,
            "fits": self.fits,
            "chosen": self.chosen,
            "reasons": list(self.reasons),
            "estimated_flash_bytes": self.estimated_flash_bytes,
            "estimated_ram_bytes": self.estimated_ram_bytes,
            "estimated_latency_ms": round(self.estimated_latency_ms, 3),
            "top1": self.top1,
            "domain": self.domain,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        """The verdict from its entry in selection.json."""
        return cls(**{**d, "reasons": tuple(d["reasons"])})


@dataclass(frozen=True)
class Selection(StepOutput):
    """The chosen entry, the device it was chosen for, and every candidate's verdict."""

    FILE: ClassVar[str] = files.SELECTION

    entry: ZooEntry
    device: DeviceProfile
    candidates: tuple[Candidate, ...]
    model_file: dict[str, Any] | None = None  # how a user's model file loaded, when used

    def to_dict(self) -> dict[str, Any]:
        """selection.json: the chosen entry, the device, and every candidate with its reasons."""
        return {
            **({"model_file": self.model_file} if self.model_file else {}),
            "zoo_id": self.entry.id,
            "entry": self.entry.to_dict(),
            "device": self.device.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "rejected": {c.id: list(c.reasons) for c in self.candidates if not c.chosen},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Selection:
        """The selection from selection.json's content."""
        return cls(
            entry=ZooEntry.from_dict(d["entry"]),
            device=DeviceProfile.from_dict(d["device"]),
            candidates=tuple(Candidate.from_dict(c) for c in d["candidates"]),
            model_file=d.get("model_file"),
        )

    def summary_part(self) -> dict[str, Any]:
        """The chosen backbone and the device as summary.json's `model` section."""
        return {"model": {**self.metadata(), "device": self.device.name}}

    def metadata(self) -> dict[str, Any]:
        """The chosen zoo id, its parameter count and its input shape."""
        entry = self.entry
        return {"zoo_id": entry.id, "params": entry.params, "input_shape": list(entry.input_shape)}

    def tags(self) -> dict[str, str]:
        """The chosen zoo id."""
        return {"zoo_id": self.entry.id}

    def notes(self) -> list[str]:
        """One line per candidate: chosen or rejected, and why."""
        return [
            f"{'CHOSEN  ' if c.chosen else 'rejected'} {c.id}: {'; '.join(c.reasons) or 'best fit'}"
            for c in self.candidates
        ]


def judge(entry: ZooEntry, device: DeviceProfile, *, allow_download: bool = False) -> Candidate:
    """Estimates the entry's int8 footprint and latency on `device` and lists what rules it out."""
    flash = int(entry.params * INT8_BYTES_PER_PARAM + INT8_FIXED_BYTES)
    # The estimated TFLite Micro arena (activations planned as TFLM does, plus its
    # bookkeeping) where the entry has one; else the single largest layer, a floor.
    ram = entry.arena_bytes or entry.peak_activation_bytes
    latency = entry.macs / device.macs_per_ms
    reasons = []
    if flash > device.flash_bytes:
        reasons.append(
            f"needs ~{_kib(flash)} flash at int8 > {_kib(device.flash_bytes)} on {device.name}"
        )
    if ram > device.ram_bytes:
        reasons.append(
            f"needs ~{_kib(ram)} activation RAM > {_kib(device.ram_bytes)} on {device.name}"
        )
    if latency > device.latency_budget_ms:
        reasons.append(
            f"~{latency:.0f} ms per inference ({entry.macs / 1e6:.1f} M MACs) > budget {device.latency_budget_ms:g} ms"
        )
    problem = weights_problem(entry, allow_download=allow_download)
    if problem:
        reasons.append(problem)
    return Candidate(
        id=entry.id,
        fits=not reasons,
        reasons=tuple(reasons),
        estimated_flash_bytes=flash,
        estimated_ram_bytes=ram,
        estimated_latency_ms=latency,
        top1=entry.top1,
        domain=entry.domain,
    )


def select_model(
    zoo: dict[str, ZooEntry],
    device: DeviceProfile,
    *,
    model_id: str = "",
    domain: str = "",
    allow_download: bool = False,
    model_file: ZooEntry | None = None,
) -> Selection:
    """Chooses the backbone to fine-tune.

    Among the entries that fit the device (flash, RAM, estimated latency) and whose weights
    can be had, prefers those pretrained on `domain`, then the highest `top1`. With
    `model_id`, that entry is taken if it fits, and the run stops if it does not. With
    `model_file` (the entry of a user's model file, zoo.model_source), that file is the
    source: taken if it fits, the run stops with its measured figures if it does not.

    Raises:
        EdgetuneError: unknown `model_id`, or nothing fits; the message lists every reason.
    """
    if model_file is not None:
        zoo, model_id = {model_file.id: model_file}, model_file.id
    if model_id and model_id not in zoo:
        raise EdgetuneError(f"unknown zoo id {model_id!r}; known: {', '.join(sorted(zoo))}")
    candidates = [judge(e, device, allow_download=allow_download) for e in zoo.values()]
    pool = [c for c in candidates if c.fits and (not model_id or c.id == model_id)]
    if not pool:
        considered = [c for c in candidates if not model_id or c.id == model_id]
        why = "; ".join(f"{c.id}: {', '.join(c.reasons)}" for c in considered)
        what = f"model file {model_file.weights['uri']} does not" if model_file else "no zoo model"
        raise EdgetuneError(
            f"{what} fit{'' if model_file else 's'} device profile {device.name!r} ({why})"
        )
    best = max(pool, key=lambda c: (bool(domain) and c.domain == domain, c.top1))
    verdicts = tuple(_verdict(c, best, domain, model_id) for c in candidates)
    return Selection(entry=zoo[best.id], device=device, candidates=verdicts)


def select_source(
    zoo: dict[str, ZooEntry],
    device: DeviceProfile,
    *,
    model_uri: str = "",
    feature_layer: str = "",
    model_normalization: str = "",
    **options: Any,
) -> Selection:
    """The zoo's best fit, or with `model_uri` the user's model file if it fits the device.

    The user's file is loaded, cut at its feature layer and costed from the model.

    Args:
        zoo: the zoo entries.
        device: the target device.
        model_uri: a whole model file (local path or fsspec URI); empty: the zoo.
        feature_layer: where the new head goes; empty: found automatically.
        model_normalization: the input scaling ("unit", "symmetric", "raw", "SCALE,OFFSET");
            empty: from the model.
        **options: select_model's `model_id`, `domain`, `allow_download`.

    Raises:
        EdgetuneError: the file cannot be used, or nothing fits (with the figures).
    """
    if not model_uri:
        return select_model(zoo, device, **options)
    from edgetune.zoo.model_source import entry_for_model_file

    entry, report = entry_for_model_file(
        model_uri, feature_layer_name=feature_layer, model_normalization=model_normalization
    )
    options.pop("model_id", None)
    chosen = select_model(zoo, device, model_file=entry, **options)
    return replace(chosen, model_file=report)


def _verdict(c: Candidate, best: Candidate, domain: str, model_id: str) -> Candidate:
    """Marks the chosen candidate; says why each other one that fits was passed over."""
    if c.id == best.id:
        return replace(c, chosen=True)
    if not c.fits:
        return c
    if model_id:
        why = f"fits, but model_id={model_id} was asked for"
    elif domain and best.domain == domain and c.domain != domain:
        why = f"fits, but pretrained on {c.domain or 'another domain'}, not {domain}"
    else:
        why = f"fits, but top-1 {c.top1:.3f} < {best.top1:.3f} of {best.id}"
    return replace(c, reasons=(why,))


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):,.1f} MiB"
