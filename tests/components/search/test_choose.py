"""The search's fan-in: the rule over the branches' records, the champion, the gate's check."""

import pytest

from edgetune.components.evaluate.core import GatePolicy, gate
from edgetune.components.search.choose import choose
from edgetune.components.search.core import (
    CandidateSpec,
    Champion,
    champion_from_tags,
    comparison_tags,
)
from edgetune.components.search.records import CandidateRecord, SearchReport, SearchVerdict
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError

MCU = DeviceProfile("mcu", flash_bytes=100_000, ram_bytes=50_000, latency_budget_ms=10.0,
                    macs_per_ms=1e5, runtime="tflite-micro")  # fmt: skip


def record(student: str, accuracy: float, flash: int, problem: str = "") -> CandidateRecord:
    spec = CandidateSpec(student, 0.5, "ptq_int8").to_dict()
    measured = {} if problem else {"accuracy": accuracy, "flash_bytes": flash, "gzip_bytes": flash // 2,
                                   "arena_bytes": 9_000, "latency_ms": 0.1, "tflm_supported": True}  # fmt: skip
    stages = {"pruned": {"accuracy": accuracy, "sparsity": 0.5}}
    return CandidateRecord(
        spec, measured, stages, teacher_accuracy=0.95, seconds=3.0, problem=problem
    )


RECORDS = [
    record("teacher", 0.95, 90_000),
    record("digitnet@0.25", 0.945, 30_000),
    record("digitnet@0.5", 0.0, 0, problem="search student 'digitnet@0.5': too large"),
]


def test_the_smallest_passing_candidate_ships_and_every_candidate_is_a_row():
    report = choose(RECORDS, {"teacher-s50-ptq_int8": 0.2}, MCU, max_drop_points=1.0)

    assert report.chosen == report.shipped == "digitnet@0.25-s50-ptq_int8"
    assert [r["name"] for r in report.candidates] == [r.name for r in RECORDS]
    rows = {r["name"]: r for r in report.candidates}
    assert rows["teacher-s50-ptq_int8"]["latency_ms"] == 0.2  # re-measured side by side
    assert rows["digitnet@0.5-s50-ptq_int8"]["rejected"] == [RECORDS[2].problem]
    assert report.stages == RECORDS[1].stages
    part = report.summary_part()
    assert part["chosen"] == report.chosen and len(part["candidates"]) == 3
    assert SearchReport.from_dict(report.to_dict()) == report


def test_the_gate_refuses_to_replace_a_better_champion():
    champion = Champion("7", accuracy=0.99)

    report = choose(RECORDS, {}, MCU, 1.0, champion, champion_margin_points=1.0)
    blessed, reasons = gate(
        {"float": {"accuracy": 0.95}, "tflite_int8": {"accuracy": 0.95, "size_bytes": 90_000}},
        GatePolicy(min_accuracy=0.5, max_drop_points=1.0), MCU, report.gate_check(),
    )  # fmt: skip

    assert report.chosen is None and report.shipped == "teacher-s50-ptq_int8"  # most accurate
    assert not blessed
    assert "below champion v7's 0.9900" in reasons[-1] and reasons[-1].startswith("FAIL")


def test_a_champion_is_compared_only_with_the_same_classes_and_input_shape():
    tags = comparison_tags(["a", "b"], [16, 16, 1])

    assert champion_from_tags("3", tags, ("a", "b"), [16, 16, 1], 0.9) == Champion("3", 0.9)
    other = champion_from_tags("3", tags, ("a", "c"), [16, 16, 1], 0.9)
    assert other.accuracy is None and "classes ['a', 'b']" in other.reason
    assert champion_from_tags("3", {}, ("a", "b"), [16, 16, 1], 0.9).accuracy is None


def test_no_file_from_any_branch_is_one_line_naming_each():
    with pytest.raises(EdgetuneError, match="no candidate made a file: digitnet@0.5"):
        choose([RECORDS[2]], {}, MCU, 1.0)


def test_the_verdict_is_the_same_value_for_the_same_choice_and_names_the_shipped_folder(tmp_path):
    """convert and evaluate take the verdict as a parameter: re-measured latencies stay out."""
    first = choose(RECORDS, {"teacher-s50-ptq_int8": 0.2}, MCU, max_drop_points=1.0)
    again = choose(RECORDS, {"teacher-s50-ptq_int8": 0.7}, MCU, max_drop_points=1.0)
    refused = choose(RECORDS, {}, MCU, 1.0, Champion("7", accuracy=0.99), 1.0)
    folders = []
    for r in RECORDS:
        r.write(tmp_path / r.name)
        folders.append(tmp_path / r.name)

    assert first.verdict() == again.verdict()
    verdict = SearchVerdict.from_dict(first.verdict())
    assert (verdict.shipped, verdict.chosen, verdict.passed) == (first.shipped, first.chosen, True)
    assert verdict.shipped_dir(folders) == tmp_path / "digitnet@0.25-s50-ptq_int8"
    no = SearchVerdict.from_dict(refused.verdict())
    assert (no.chosen, no.passed) == ("", False) and "below champion v7's" in no.check
    with pytest.raises(EdgetuneError, match="no branch folder holds candidate 'other'"):
        SearchVerdict("other", "", False, "").shipped_dir(folders)
