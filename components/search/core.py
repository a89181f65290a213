"""The compression search: the declared space, its candidates, and the rule that picks one.

A candidate is one way to compress the fine-tuned model: a student (the fine-tuned model
itself, or a smaller zoo entry distilled from it), a target sparsity and a quantization.
The rule: among the candidates whose shipped-file accuracy is within `max_drop_points` of
the float teacher, that fit the device's flash and RAM (and run in TFLite Micro on a
microcontroller), and that are not worse than the serving `champion` by more than
`champion_margin_points`, take the smallest: by flash, then arena, then latency.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from edgetune.components.search.distill import DistillSettings, student_width
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError
from edgetune.step_config import StepConfig

# int16x8: int16 activations, int8 weights (TFLite's experimental 16x8 mode), int16 I/O.
Quantization = Literal["ptq_int8", "qat_int8", "float16", "int16x8"]
TEACHER = "teacher"  # the fine-tuned model itself, no distillation
# Today's fixed recipe, the one candidate when the search is off: the fine-tuned model pruned
# to `target_sparsity`, prune-preserving QAT, int8.
FIXED_QUANTIZATION: Quantization = "qat_int8"
# Model-version tags that let a later run compare itself with this version (`champion_from`).
TAG_LABELS = "edgetune.labels"
TAG_INPUT_SHAPE = "edgetune.input_shape"


class SearchConfig(StepConfig):
    """The search space and the champion rule."""

    step: ClassVar[str] = "search"

    enabled: bool = Field(
        True,
        description="search the space; false: one candidate, the fixed recipe (the fine-tuned "
        "model, target_sparsity, QAT int8)",
    )
    sparsity: list[float] = Field(
        [0.5], min_length=1, description="target sparsities to try (each 0 <= s < 1)"
    )
    quantization: list[Quantization] = Field(
        ["ptq_int8"],
        min_length=1,
        description="quantizations to try: ptq_int8, qat_int8, float16, int16x8 (16-bit "
        "activations, 8-bit weights)",
    )
    students: list[str] = Field(
        [TEACHER, "digitnet@0.25"],
        min_length=1,
        description="models to try: 'teacher' (the fine-tuned model) or digitnet@<width> "
        "(0 < width <= 1), a student distilled from it",
    )
    champion_margin_points: float = Field(
        0.0, ge=0, le=100, description="a candidate may trail the champion by this many points"
    )
    distill_alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="distillation: weight of the labels' cross-entropy (1: labels only)",
    )
    distill_temperature: float = Field(
        4.0, gt=0, description="distillation: softmax temperature of teacher and student"
    )
    distill_epochs: int = Field(8, ge=1, description="distillation: epochs a student trains")

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        for name in ("sparsity", "quantization", "students"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"search_{name}={values} lists a value twice")
        bad = [s for s in self.sparsity if not 0.0 <= s < 1.0]
        if bad:
            raise ValueError(f"search_sparsity={self.sparsity}: {bad} outside 0 <= s < 1")
        for student in self.students:
            if student != TEACHER:
                student_width(student)  # a bad id is one line, before anything trains
        return self

    def distill_settings(self, seed: int = 0) -> DistillSettings:
        """How a student of this space learns from the teacher."""
        return DistillSettings(alpha=self.distill_alpha, temperature=self.distill_temperature,
                               epochs=self.distill_epochs, seed=seed)  # fmt: skip


@dataclass(frozen=True)
class CandidateSpec:
    """One branch of the search: what to train and how to compress it."""

    student: str
    sparsity: float
    quantization: Quantization

    @property
    def name(self) -> str:
        """A readable, unique id of the candidate: `<student>-s<sparsity %>-<quantization>`."""
        return f"{self.student}-s{round(self.sparsity * 100)}-{self.quantization}"

    @property
    def path(self) -> str:
        """The compression path, for colouring plots: distilled or not, and how quantized."""
        how = "distil" if self.student != TEACHER else "prune" if self.sparsity else "plain"
        return f"{how}+{self.quantization}"

    def to_dict(self) -> dict[str, Any]:
        """The candidate's fields with its name and compression path."""
        return {**asdict(self), "name": self.name, "path": self.path}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateSpec:
        """The candidate from `to_dict`'s output (name and path are derived, not read)."""
        return cls(str(d["student"]), float(d["sparsity"]), d["quantization"])


def candidates(
    config: SearchConfig, device: DeviceProfile, fixed_sparsity: float = 0.5
) -> list[CandidateSpec]:
    """Every combination of the space, in a stable order; the fixed recipe when it is off.

    Args:
        config: the space.
        device: the target (a TFLite Micro device has no float16 kernels).
        fixed_sparsity: the fixed recipe's sparsity (the `target_sparsity` run parameter).

    Raises:
        EdgetuneError: the space cannot produce a file the device runs (float16 only, on a
            TFLite Micro device, whose kernels are integer).
    """
    if not config.enabled:
        return [CandidateSpec(TEACHER, float(fixed_sparsity), FIXED_QUANTIZATION)]
    quantization = list(config.quantization)
    if device.runtime == "tflite-micro" and set(quantization) == {"float16"}:
        raise EdgetuneError(
            f"search_quantization={quantization}: {device.name} runs TFLite Micro, which has "
            "no float16 kernels; add ptq_int8 or qat_int8"
        )
    return [
        CandidateSpec(student, float(sparsity), q)
        for student in config.students
        for sparsity in config.sparsity
        for q in quantization
    ]


@dataclass(frozen=True)
class Champion:
    """The model serving now (the `champion` alias), as far as this run can compare it.

    `accuracy` is on this run's test split when the champion has the same classes and input
    spec; None otherwise, with `reason` saying why it was not compared.
    """

    version: str
    accuracy: float | None
    reason: str = ""


def champion_from(
    version: str,
    labels: Sequence[str],
    input_shape: Sequence[int],
    run_labels: Sequence[str],
    run_input_shape: Sequence[int],
    accuracy_here: float | None,
) -> Champion:
    """The champion, comparable only when its classes and input shape are this run's."""
    if list(labels) != list(run_labels):
        return Champion(
            version,
            None,
            f"champion v{version} has classes {list(labels)}, this run {list(run_labels)}: not compared",
        )
    if list(input_shape) != list(run_input_shape):
        return Champion(
            version,
            None,
            f"champion v{version} takes input {list(input_shape)}, this run "
            f"{list(run_input_shape)}: not compared",
        )
    if accuracy_here is None:
        return Champion(version, None, f"champion v{version} could not be evaluated here")
    return Champion(version, float(accuracy_here))


def comparison_tags(labels: Sequence[str], input_shape: Sequence[int]) -> dict[str, str]:
    """Model-version tags a later run reads to decide whether it can compare with this one."""
    return {TAG_LABELS: json.dumps(list(labels)), TAG_INPUT_SHAPE: json.dumps(list(input_shape))}


def champion_from_tags(
    version: str,
    tags: dict[str, str],
    run_labels: Sequence[str],
    run_input_shape: Sequence[int],
    accuracy_here: float | None,
) -> Champion:
    """`champion_from` on a registered version's tags (`comparison_tags`)."""
    if TAG_LABELS not in tags or TAG_INPUT_SHAPE not in tags:
        return Champion(version, None, f"champion v{version} does not record its classes and "
                        "input shape: not compared")  # fmt: skip
    labels, shape = json.loads(tags[TAG_LABELS]), json.loads(tags[TAG_INPUT_SHAPE])
    return champion_from(version, labels, shape, run_labels, run_input_shape, accuracy_here)


@dataclass(frozen=True)
class Scored:
    """A measured candidate, as the rule sees it."""

    name: str
    accuracy: float
    flash_bytes: int
    arena_bytes: int
    latency_ms: float
    tflm_supported: bool | None = None
    ship_problem: str = ""  # why the device cannot take the file as the gate ships it


@dataclass(frozen=True)
class Selection:
    """The rule's verdict: the chosen candidate (or None) and why each other one lost."""

    chosen: str | None
    rejected: dict[str, list[str]] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-ready dict."""
        return asdict(self)


def select(
    scored: Sequence[Scored],
    float_accuracy: float,
    max_drop_points: float,
    device: DeviceProfile,
    champion: Champion | None = None,
    champion_margin_points: float = 0.0,
) -> Selection:
    """The smallest candidate (flash, then arena, then latency) that passes every check.

    A candidate fails when its accuracy is more than `max_drop_points` below the float
    teacher's, it does not fit the device's flash or RAM, TFLite Micro cannot run it on a
    TFLite Micro device, or it trails a comparable champion by more than
    `champion_margin_points`. When none passes, `chosen` is None: nothing replaces the
    champion.
    """
    rejected = {c.name: _failures(c, float_accuracy, max_drop_points, device) for c in scored}
    if champion is not None and champion.accuracy is not None:
        floor = champion.accuracy - champion_margin_points / 100.0
        for c in scored:
            if c.accuracy < floor - 1e-12:
                rejected[c.name].append(
                    f"accuracy {c.accuracy:.4f} below champion v{champion.version}'s "
                    f"{champion.accuracy:.4f} - {champion_margin_points} points"
                )
    passing = [c for c in scored if not rejected[c.name]]
    best = min(
        passing, key=lambda c: (c.flash_bytes, c.arena_bytes, c.latency_ms, c.name), default=None
    )
    return Selection(
        chosen=best.name if best else None,
        rejected={name: why for name, why in rejected.items() if why},
        champion=asdict(champion) if champion else {},
    )


def _failures(
    c: Scored, float_accuracy: float, max_drop_points: float, device: DeviceProfile
) -> list[str]:
    why = []
    drop = (float_accuracy - c.accuracy) * 100.0
    if drop > max_drop_points + 1e-9:
        why.append(f"{drop:.2f} points below the float teacher (max_drop_points={max_drop_points})")
    if c.flash_bytes > device.flash_bytes:
        why.append(f"{c.flash_bytes} B > flash {device.flash_bytes} B")
    if c.arena_bytes > device.ram_bytes:
        why.append(f"arena {c.arena_bytes} B > RAM {device.ram_bytes} B")
    if device.runtime == "tflite-micro" and c.tflm_supported is False:
        why.append("TFLite Micro cannot run it")
    if c.ship_problem:
        why.append(f"cannot ship: {c.ship_problem}")
    return why
