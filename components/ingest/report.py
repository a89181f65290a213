"""What ingest found, in one report: every quarantined file, every class, every problem.

The report is written whether the run goes on or stops, so one run shows every problem.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from edgetune import files
from edgetune.components.common.outputs import StepOutput
from edgetune.components.ingest.examine import Accepted, Quarantined


@dataclass(frozen=True)
class IngestReport(StepOutput):
    """What ingest accepted, how it split it, what it refused and why, and what looks wrong."""

    FILE: ClassVar[str] = files.INGEST_REPORT

    source: str
    status: str  # "ok", or "stopped" when `problems` stopped the run
    problems: tuple[str, ...]
    fingerprint: str
    classes: tuple[str, ...]
    class_counts: dict[str, int]
    counts: dict[str, dict[str, int]]
    n_train: int
    n_val: int
    n_test: int
    n_quarantined: int
    quarantined_by_reason: dict[str, int]
    quarantined: tuple[dict[str, str], ...]
    empty_classes: tuple[str, ...]
    small_classes: dict[str, int]
    label_conflicts: tuple[dict[str, Any], ...]
    duplicates: tuple[dict[str, Any], ...]
    n_duplicates: int
    near_empty: tuple[str, ...]
    ignored_files: int
    skipped: dict[str, int]
    image_sizes: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready lists and dicts (ingest_report.json)."""
        d = asdict(self)
        for key in ("problems", "classes", "empty_classes", "near_empty"):
            d[key] = list(d[key])
        for key in ("quarantined", "label_conflicts", "duplicates"):
            d[key] = [dict(x) for x in d[key]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestReport:
        """The report from ingest_report.json's content."""
        d = dict(d)
        for key in ("problems", "classes", "empty_classes", "near_empty"):
            d[key] = tuple(d[key])
        for key in ("quarantined", "label_conflicts", "duplicates"):
            d[key] = tuple(dict(x) for x in d[key])
        return cls(**d)

    def metrics(self) -> dict[str, float]:
        """The examples per split and the number of quarantined files."""
        return {k: getattr(self, k) for k in ("n_train", "n_val", "n_test", "n_quarantined")}

    def summary_part(self) -> dict[str, Any]:
        """The fingerprint, the counts and the classes as summary.json's `dataset` section."""
        return {"dataset": self.metadata()}

    def metadata(self) -> dict[str, Any]:
        """The fingerprint, the counts and the classes, shown on the KFP dataset artifact."""
        return {"fingerprint": self.fingerprint, **self.metrics(), "classes": list(self.classes)}

    def tags(self) -> dict[str, str]:
        """The data fingerprint, so runs on the same data can be found."""
        return {"data_fingerprint": self.fingerprint}

    def notes(self) -> list[str]:
        """One line per quarantined file, with its reason."""
        return [f"quarantined {bad['file']}: {bad['reason']}" for bad in self.quarantined]


@dataclass(frozen=True)
class Findings:
    """The analysis of one pass, before any split is assigned."""

    kept: list[Accepted]
    quarantined: list[Quarantined]
    label_conflicts: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    class_counts: dict[str, int]
    empty_classes: list[str]


def analyse(
    accepted: list[Accepted], quarantined: list[Quarantined], listed_classes: tuple[str, ...]
) -> Findings:
    """Finds label conflicts (quarantined, both sides), duplicates and empty classes."""
    by_content: dict[str, list[Accepted]] = defaultdict(list)
    for row in accepted:
        by_content[row.sha256].append(row)
    conflicts, duplicates, conflicting = [], [], set()
    for sha, rows in by_content.items():
        labels = sorted({r.label for r in rows})
        files = sorted(r.path for r in rows)
        if len(labels) > 1:
            conflicting.add(sha)
            conflicts.append({"sha256": sha, "labels": labels, "files": files})
        elif len(rows) > 1:
            duplicates.append({"sha256": sha, "class": labels[0], "files": files})
    reasons = {c["sha256"]: "same content labelled " + " and ".join(c["labels"]) for c in conflicts}
    quarantined = quarantined + [
        Quarantined(r.path, "label conflict", reasons[r.sha256], r.label)
        for r in accepted
        if r.sha256 in conflicting
    ]
    kept = [r for r in accepted if r.sha256 not in conflicting]
    sizes = Counter(r.label for r in kept)
    # A listed class folder with no image file at all; one whose images were all refused is
    # not empty but too small, and stops the run.
    tried = {r.label for r in accepted} | {q.label for q in quarantined}
    empty = sorted(set(listed_classes) - tried)
    counts = {c: sizes[c] for c in sorted((set(listed_classes) | set(sizes)) - set(empty))}
    return Findings(kept, quarantined, conflicts, duplicates, counts, empty)


def problems(
    findings: Findings, total: int, max_quarantine_fraction: float, min_per_class: int
) -> list[str]:
    """Each reason the run must stop, as one clause; empty when the data can be used."""
    found = []
    n_bad = len(findings.quarantined)
    if total and n_bad / total > max_quarantine_fraction:
        found.append(
            f"{n_bad} of {total} images ({n_bad / total:.1%}) quarantined ({by_reason_text(findings)}), "
            f"above max_quarantine_fraction={max_quarantine_fraction:g}"
        )
    counts = findings.class_counts
    if len(counts) < 2:
        found.append(
            f"only {len(counts)} class ({', '.join(counts)}); a classifier needs at least 2"
        )
    small = {c: n for c, n in counts.items() if n < min_per_class}
    if small:
        listed = ", ".join(f"{c!r} has {n}" for c, n in small.items())
        found.append(f"class {listed} usable images; min_per_class={min_per_class}")
    return found


def by_reason(quarantined: list[Quarantined]) -> dict[str, int]:
    """How many files were quarantined for each kind of reason, most frequent first."""
    return dict(Counter(q.kind for q in quarantined).most_common())


def by_reason_text(findings: Findings) -> str:
    """The quarantine counts by reason as one phrase, e.g. `not an image 3, too large 1`."""
    return ", ".join(f"{kind} {n}" for kind, n in by_reason(findings.quarantined).items())


def image_sizes(rows: list[Accepted]) -> dict[str, Any]:
    """The range of widths and heights and the modes and formats of the kept images ({} if none)."""
    if not rows:
        return {}
    widths, heights = [r.width for r in rows], [r.height for r in rows]
    return {
        "min_width": min(widths),
        "max_width": max(widths),
        "min_height": min(heights),
        "max_height": max(heights),
        "modes": sorted({r.mode for r in rows}),
        "formats": sorted({r.format for r in rows}),
    }
