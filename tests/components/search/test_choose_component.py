"""The choose KFP wrapper's python_func against a real registry: a better champion is kept."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import tracking, training
from edgetune.components.search.component import choose
from edgetune.components.search.core import comparison_tags
from edgetune.components.search.records import SearchReport
from edgetune.components.select_model.core import select_model

SHAPE = [support.SIZE, support.SIZE, 1]


def register_champion(int8_dir: Path, data: Path, uri: str, labels: list[str]) -> str:
    mlflow.set_tracking_uri(uri)
    pixels = training.load_pixels(data, "test")[0][:2]
    with mlflow.start_run():
        version = tracking.log_int8_model(int8_dir / files.TFLITE_MODEL,
                                          data / files.PREPROCESSING_SPEC, pixels,
                                          tags=comparison_tags(labels, SHAPE))  # fmt: skip
    tracking.set_model_alias("champion", version, tracking_uri=uri)
    return version


def run_choose(data, weights_file, candidate, uri: str, name: str, out: Path) -> SearchReport:
    entry = support.tiny_entry(str(weights_file))
    selection = select_model({entry.id: entry}, support.ROOMY_DEVICE)
    selection.write(out / "selection")
    report = dsl.Artifact(uri=str(out / "report"))
    verdict = choose.python_func(
        data=dsl.Dataset(uri=str(data)),
        selection=dsl.Artifact(uri=str(out / "selection")),
        candidates=[candidate],
        report=report,
        run_name=name,
        tracking_uri=uri,
        max_drop_points=50.0,
    )
    assert verdict == SearchReport.read(report.path).verdict()  # what convert and evaluate take
    return SearchReport.read(report.path)


@pytest.mark.slow
def test_a_better_champion_is_kept_and_one_with_other_classes_is_not_compared(
    micro, tiny_data, weights_file, run_name, tmp_path
):
    uri = support.make_tracking_uri(tmp_path / "store")
    register_champion(micro.int8_dir, tiny_data, uri, list(support.LABELS))
    candidate = dsl.Model(uri=str(support.branch_folder(micro.int8_dir, tmp_path / "candidate")))

    kept = run_choose(tiny_data, weights_file, candidate, uri, f"{run_name}-a", tmp_path / "a")

    assert kept.chosen is None and kept.champion["version"] == "1"
    assert kept.champion["accuracy"] > 0  # the champion's file, run on this test split
    assert not kept.gate_check()[0] and "below champion v1's" in kept.gate_check()[1]
    assert (tmp_path / "a" / "report" / files.PARETO_PNG).is_file()

    register_champion(micro.int8_dir, tiny_data, uri, ["cat", "dog", "bird"])
    compared = run_choose(tiny_data, weights_file, candidate, uri, f"{run_name}-b", tmp_path / "b")

    assert compared.chosen == "teacher-s50-ptq_int8"
    assert compared.champion["accuracy"] is None and "not compared" in compared.champion["reason"]
    run = support.runs_of(uri, f"{run_name}-b")["choose"]
    assert run.data.tags["search_chosen"] == "teacher-s50-ptq_int8"
