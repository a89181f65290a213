"""The search's outputs as typed files: one record per candidate branch, one report of the choice.

A branch writes its `CandidateRecord` (candidate.json) beside the file it made; the choose
step reads every record, applies the rule and writes the `SearchReport` (search.json, with
the Pareto plot beside it), whose summary part is `candidates` and `chosen` in summary.json,
and hands its `SearchVerdict` on as a parameter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgetune import files
from edgetune.components.common.outputs import StepOutput
from edgetune.errors import EdgetuneError

# What the candidate table in summary.json keeps of each candidate's measurements.
ROW_KEYS = (
    "accuracy", "flash_bytes", "gzip_bytes", "arena_bytes", "arena_source", "latency_ms",
    "macs", "device_latency_ms_estimate", "energy_uj_estimate", "tflm_accuracy",
    "tflm_agreement", "tflm_supported", "ops", "int8_problem",
)  # fmt: skip


@dataclass(frozen=True)
class CandidateRecord(StepOutput):
    """One branch's result: its spec, the figures of its shipped file, its Keras stages.

    Attributes:
        spec: the candidate (`CandidateSpec.to_dict`).
        measured: `Measured.to_dict()` of its .tflite; empty when the branch made no file.
        stages: the Keras models on its way, scored on the test split: `pruned` (accuracy,
            sparsity) when pruned, `qat` (accuracy, sparsity, mode) when QAT ran.
        teacher_accuracy: the fine-tuned float model on the test split.
        seconds: the branch's wall time (train, compress, measure).
        problem: why the branch made no file (a student too large for the device, ...).
    """

    FILE: ClassVar[str] = files.CANDIDATE

    spec: dict[str, Any]
    measured: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    teacher_accuracy: float
    seconds: float
    problem: str = ""

    @property
    def name(self) -> str:
        """The candidate's name (`teacher-s50-ptq_int8`)."""
        return str(self.spec["name"])

    def to_dict(self) -> dict[str, Any]:
        """The record as written to candidate.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateRecord:
        """The record from candidate.json's content."""
        return cls(**d)

    def row(self) -> dict[str, Any]:
        """The candidate as one row of the table: spec, headline figures, time, problem."""
        figures = {k: self.measured[k] for k in ROW_KEYS if k in self.measured}
        problems = [*self.measured.get("problems", []), *([self.problem] if self.problem else [])]
        return {**self.spec, **figures, "seconds": round(self.seconds, 2), "problems": problems}

    def metrics(self) -> dict[str, float]:
        """The file's accuracy and sizes, for the candidate's nested MLflow run."""
        keys = ("accuracy", "flash_bytes", "gzip_bytes", "arena_bytes", "latency_ms")
        return {k: float(self.measured[k]) for k in keys if self.measured.get(k) is not None}

    def tags(self) -> dict[str, str]:
        """The candidate's name and compression path, to search its runs by."""
        return {"candidate": self.name, "candidate_path": str(self.spec.get("path", ""))}

    def notes(self) -> list[str]:
        """One line: the candidate's accuracy and sizes, or why it made no file."""
        if not self.measured:
            return [f"{self.name}: no file ({self.problem})"]
        m = self.measured
        return [f"{self.name}: accuracy {m['accuracy']:.2%}, {m['flash_bytes']:,} B flash, "
                f"arena {m['arena_bytes']:,} B, {self.seconds:.0f} s"]  # fmt: skip


@dataclass(frozen=True)
class SearchReport(StepOutput):
    """The choose step's output: every candidate, the rule's verdict, the file sent to the gate.

    Attributes:
        candidates: one row per candidate (`CandidateRecord.row`), with `rejected` (the
            rule's reasons, empty for a passing one) and `chosen`.
        chosen: the rule's choice, or None when no candidate passed (then `shipped` is the
            most accurate one, which the gate refuses).
        shipped: the candidate whose file goes to convert, evaluate and deploy.
        float_accuracy: the fine-tuned float model's test accuracy, the budget's reference.
        max_drop_points: the budget.
        champion: the serving model as compared (version, accuracy here, or the reason not).
        stages: the shipped candidate's Keras stages (`pruned`, `qat`).
    """

    FILE: ClassVar[str] = files.SEARCH_REPORT
    ATTACHMENTS: ClassVar[tuple[str, ...]] = (files.PARETO_PNG,)

    candidates: list[dict[str, Any]]
    chosen: str | None
    shipped: str
    float_accuracy: float
    max_drop_points: float
    champion: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as written to search.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchReport:
        """The report from search.json's content."""
        return cls(**d)

    def gate_check(self) -> tuple[bool, str]:
        """The gate's check of the search: a chosen candidate, or why none may ship."""
        if self.chosen is not None:
            return True, f"search chose {self.chosen} of {len(self.candidates)} candidates"
        rejected = self._row(self.shipped).get("rejected") or ["no candidate made a file"]
        return False, f"no candidate passed the search rule; {self.shipped}: {'; '.join(rejected)}"

    def verdict(self) -> dict[str, Any]:
        """What the steps after choose take of it, as one KFP parameter (`SearchVerdict`).

        It holds no figure measured anew by each run (no latency), so the same choice is the
        same value and convert and evaluate are cache hits when nothing else changed.
        """
        passed, check = self.gate_check()
        return SearchVerdict(self.shipped, self.chosen or "", passed, check).to_dict()

    def _row(self, name: str) -> dict[str, Any]:
        return next((r for r in self.candidates if r["name"] == name), {})

    def summary_part(self) -> dict[str, Any]:
        """`candidates` and `chosen` in summary.json, the shipped one's Keras stages, `search`."""
        search = {"shipped": self.shipped, "float_accuracy": self.float_accuracy,
                  "max_drop_points": self.max_drop_points, "champion": self.champion}  # fmt: skip
        return {"candidates": self.candidates, "chosen": self.chosen, "search": search,
                "stages": self.stages}  # fmt: skip

    def metrics(self) -> dict[str, float]:
        """How many candidates, how many passed, and the shipped file's flash and accuracy."""
        shipped = self._row(self.shipped)
        return {
            "search_candidates": float(len(self.candidates)),
            "search_passing": float(sum(not r.get("rejected") for r in self.candidates)),
            "search_shipped_flash_bytes": float(shipped.get("flash_bytes", 0)),
            "search_shipped_accuracy": float(shipped.get("accuracy", 0.0)),
        }

    def tags(self) -> dict[str, str]:
        """The chosen candidate (`none` when the rule refused every one)."""
        return {"search_chosen": self.chosen or "none"}

    def metadata(self) -> dict[str, Any]:
        """What the KFP artifact shows: chosen and shipped."""
        return {"chosen": self.chosen or "", "shipped": self.shipped}

    def notes(self) -> list[str]:
        """The verdict, then one line per rejected candidate."""
        lines = [self.gate_check()[1]]
        if self.champion.get("reason"):
            lines.append(self.champion["reason"])
        lines += [f"  {r['name']}: {'; '.join(r['rejected'])}" for r in self.candidates
                  if r.get("rejected")]  # fmt: skip
        return lines


@dataclass(frozen=True)
class SearchVerdict:
    """choose's answer to the steps after it: which candidate's file, and the gate's check.

    Attributes:
        shipped: the candidate whose file convert exports and evaluate gates.
        chosen: the rule's choice, "" when no candidate passed.
        passed: whether the search lets the file ship (the gate's check).
        check: that check in words (`SearchReport.gate_check`).
    """

    shipped: str
    chosen: str
    passed: bool
    check: str

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a KFP dict parameter."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchVerdict:
        """The verdict from choose's output parameter."""
        return cls(**d)

    def shipped_dir(self, candidate_dirs: Sequence[str | os.PathLike]) -> Path:
        """The branch folder of the shipped candidate, among every branch's folder.

        Raises:
            EdgetuneError: no branch made it (the folders are not this search's).
        """
        for folder in candidate_dirs:
            if CandidateRecord.read(folder).name == self.shipped:
                return Path(folder)
        raise EdgetuneError(f"search: no branch folder holds candidate {self.shipped!r}")
