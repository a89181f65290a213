"""The fan-in of the search: every branch's record, the champion, the rule, the shipped file.

`choose` applies `core.select` to the branches' records (latency re-measured here with the
files' repeats interleaved, so load on the machine falls on all of them alike) and names
the file that goes on to convert, evaluate and deploy (`SearchReport.verdict`). When no candidate passes, the most
accurate one is still handed on, marked unchosen, so the gate can refuse it with the reasons
and the run reports every candidate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edgetune import files, litert
from edgetune.components.search.core import (
    Champion,
    Scored,
    champion_from_tags,
    select,
)
from edgetune.components.search.records import CandidateRecord, SearchReport
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError


def choose(
    records: Sequence[CandidateRecord],
    latencies_ms: dict[str, float],
    device: DeviceProfile,
    max_drop_points: float,
    champion: Champion | None = None,
    champion_margin_points: float = 0.0,
) -> SearchReport:
    """The rule's verdict over the measured records, and the candidate to ship.

    Args:
        records: every branch's record (those without a file are listed, not scored).
        latencies_ms: candidate name → LiteRT latency measured side by side.
        device: the target's flash, RAM and runtime.
        max_drop_points: how far below the float teacher a candidate may score.
        champion: the serving model as comparable here (None: there is none).
        champion_margin_points: how far a candidate may trail a comparable champion.

    Raises:
        EdgetuneError: no branch made a file (each branch's problem named).
    """
    made = [r for r in records if r.measured]
    if not made:
        raise EdgetuneError("search: no candidate made a file: "
                            + "; ".join(f"{r.name}: {r.problem}" for r in records))  # fmt: skip
    float_accuracy = made[0].teacher_accuracy
    scored = [
        Scored(r.name, r.measured["accuracy"], r.measured["flash_bytes"],
               r.measured["arena_bytes"], latencies_ms.get(r.name, r.measured["latency_ms"]),
               r.measured.get("tflm_supported"), r.measured.get("int8_problem", ""))
        for r in made
    ]  # fmt: skip
    verdict = select(scored, float_accuracy, max_drop_points, device, champion,
                     champion_margin_points)  # fmt: skip
    shipped = verdict.chosen or max(made, key=lambda r: (r.measured["accuracy"],
                                                         -r.measured["flash_bytes"])).name  # fmt: skip
    rows = []
    for r in records:
        row = r.row()
        if r.name in latencies_ms:
            row["latency_ms"] = latencies_ms[r.name]
        why = verdict.rejected.get(r.name, [] if r.measured else [r.problem])
        rows.append({**row, "rejected": why, "chosen": r.name == verdict.chosen})
    stages = next(r.stages for r in made if r.name == shipped)
    return SearchReport(rows, verdict.chosen, shipped, float_accuracy, max_drop_points,
                        verdict.champion, stages)  # fmt: skip


def champion_here(
    version: str,
    tags: dict[str, str],
    tflite: str | os.PathLike | None,
    data_dir: str | os.PathLike,
) -> Champion:
    """The champion as this run can compare it: its accuracy on this run's test split.

    Only a champion with this run's classes and input shape is run (`champion_from_tags`);
    otherwise the reason is recorded and it is not compared.
    """
    from edgetune.components.common import training

    spec = training.load_spec(data_dir)
    shape = [spec.height, spec.width, spec.channels]
    compared = champion_from_tags(version, tags, spec.labels, shape, accuracy_here=0.0)
    if compared.accuracy is None or tflite is None:
        return compared if tflite else Champion(version, None, f"champion v{version}: no file")
    import numpy as np

    x, y = training.load_split(data_dir, "test")
    scores = litert.predict(litert.load(str(tflite)), x)
    return Champion(version, float(np.mean(np.argmax(scores, axis=-1) == y)) if len(y) else 0.0)


def choose_artifacts(
    candidate_dirs: Sequence[str | os.PathLike],
    data_dir: str | os.PathLike,
    device: DeviceProfile,
    max_drop_points: float,
    report_dir: str | os.PathLike,
    *,
    champion: Champion | None = None,
    champion_margin_points: float = 0.0,
) -> SearchReport:
    """`choose` on the branches' folders; plots the search.

    The shipped file is not copied: the steps after choose take every branch's folder and
    the report's `verdict()`, which names it (`SearchVerdict.shipped_dir`).

    Args:
        candidate_dirs: one folder per branch (candidate.json, model.tflite when made).
        data_dir: preprocess's output (the test split times the latencies).
        device: the target.
        max_drop_points: the accuracy budget against the float teacher.
        report_dir: gets search.json's plot, pareto.png (the caller writes search.json).
        champion: the serving model, as `champion_here` compared it.
        champion_margin_points: how far a candidate may trail a comparable champion.
    """
    from edgetune.components.common import training
    from edgetune.components.search.measure import interleaved_latency_ms
    from edgetune.components.search.pareto import pareto_plot

    folders = {CandidateRecord.read(d).name: Path(d) for d in candidate_dirs}
    records = [CandidateRecord.read(d) for d in folders.values()]
    made = [r.name for r in records if r.measured]
    x, _ = training.load_split(data_dir, "test")
    paths = [folders[n] / files.TFLITE_MODEL for n in made]
    latencies = dict(zip(made, interleaved_latency_ms(paths, x[:1]) if made else [], strict=True))
    report = choose(records, latencies, device, max_drop_points, champion,
                    champion_margin_points)  # fmt: skip
    floor = report.float_accuracy - max_drop_points / 100.0
    pareto_plot([r for r in report.candidates if r["name"] in latencies],
                files.artifact_dir(report_dir) / files.PARETO_PNG,
                chosen=report.chosen, accuracy_floor=floor)  # fmt: skip
    return report
