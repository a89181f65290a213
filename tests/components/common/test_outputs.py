"""Each step output is read back by the class that wrote it, whole and typed."""

from __future__ import annotations

import pytest
from support import models as support

from edgetune import files
from edgetune.components.convert.outputs import ConvertReport
from edgetune.components.preprocess.core import PreprocessReport
from edgetune.components.select_model.core import Candidate, Selection
from edgetune.errors import EdgetuneError


def test_a_selection_round_trips_with_its_entry_device_and_verdicts(tmp_path):
    rejected = Candidate(id="big", fits=False, reasons=("too big",), estimated_flash_bytes=9,
                         estimated_ram_bytes=9, estimated_latency_ms=1.5, top1=0.9, domain="x")  # fmt: skip
    chosen = Candidate(id="tiny", fits=True, reasons=(), estimated_flash_bytes=1,
                       estimated_ram_bytes=1, estimated_latency_ms=0.5, top1=0.5, domain="bars",
                       chosen=True)  # fmt: skip
    selection = Selection(support.tiny_entry("w.h5"), support.ROOMY_DEVICE, (chosen, rejected))

    selection.write(tmp_path)

    assert Selection.read(tmp_path) == selection
    assert files.read_json(tmp_path / files.SELECTION)["rejected"] == {"big": ["too big"]}
    assert selection.summary_part() == {"model": {"zoo_id": "tiny", "params": 0,
                                        "input_shape": [16, 16, 1], "device": "roomy"}}  # fmt: skip
    assert selection.notes() == ["CHOSEN   tiny: best fit", "rejected big: too big"]


def test_a_preprocess_report_round_trips_and_shows_counts_and_input_shape(tmp_path):
    report = PreprocessReport(counts={"train": 8, "val": 2, "test": 2}, n_train_original=4,
                              policy={"copies": 1}, seed=0, labels=("a", "b"),
                              shapes={"train": [8, 12, 10, 1], "val": [2, 12, 10, 1],
                                      "test": [2, 12, 10, 1]})  # fmt: skip

    report.write(tmp_path)

    assert PreprocessReport.read(tmp_path) == report
    assert report.metadata() == {"counts": report.counts, "input_shape": [12, 10, 1]}
    assert report.metrics() == {"n_train": 8, "n_val": 2, "n_test": 2}


def test_the_convert_report_gives_each_files_sizes_to_the_summary_stages():
    check = {"size_bytes": 100, "gzip_bytes": 80, "input_dtype": "int8"}
    report = ConvertReport({"tflite_float": {**check, "size_bytes": 400}, "tflite_int8": check,
                            "int8_to_float": 0.25, "int8_gzip_to_float": 0.2})  # fmt: skip

    assert report.summary_part() == {"stages": {
        "tflite_float": {"size_bytes": 400, "gzip_bytes": 80},
        "tflite_int8": {"size_bytes": 100, "gzip_bytes": 80}}}  # fmt: skip
    assert report.metrics() == {"int8_to_float": 0.25, "int8_gzip_to_float": 0.2,
                                "tflite_float_size_bytes": 400, "tflite_float_gzip_bytes": 80,
                                "tflite_int8_size_bytes": 100, "tflite_int8_gzip_bytes": 80}  # fmt: skip


def test_reading_an_output_from_the_wrong_artifact_names_the_missing_file(tmp_path):
    with pytest.raises(EdgetuneError, match=r"selection.json: missing; expected the Selection"):
        Selection.read(tmp_path)
