"""evaluate: metrics on a hand-made prediction set, confusion PNGs, and every way the gate says no."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support import models as support

from edgetune import files, litert
from edgetune.components.evaluate.core import (
    Evaluation,
    GatePolicy,
    classification_metrics,
    evaluate,
    gate,
    plot_confusion,
)
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError

LABELS = ["cat", "dog", "cow"]
DEVICE = DeviceProfile("board", flash_bytes=100_000, ram_bytes=1, latency_budget_ms=1,
                       macs_per_ms=1)  # fmt: skip


def test_metrics_of_a_hand_made_prediction_set():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2, 2, 1])

    m = classification_metrics(y_true, y_pred, LABELS)

    assert m["confusion"] == [[1, 1, 0], [1, 2, 0], [0, 1, 2]]  # rows: truth, columns: predicted
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["per_class"]["cat"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert m["per_class"]["dog"] == pytest.approx({"precision": 0.5, "recall": 2 / 3, "support": 3})
    assert m["per_class"]["cow"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "support": 3})


def test_a_class_never_predicted_or_never_present_scores_zero_not_nan():
    m = classification_metrics(np.array([0, 0, 1]), np.array([0, 0, 0]), LABELS)

    assert m["per_class"]["dog"] == {"precision": 0.0, "recall": 0.0, "support": 1}
    assert m["per_class"]["cow"] == {"precision": 0.0, "recall": 0.0, "support": 0}
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_the_confusion_png_opens_and_is_replaced_atomically(tmp_path):
    out = tmp_path / files.CONFUSION_PNG.format(stage="float")

    plot_confusion([[5, 1, 0], [0, 6, 0], [2, 0, 4]], LABELS, "float: accuracy 83%", out)

    with Image.open(out) as image:
        assert image.format == "PNG" and min(image.size) >= 300
        assert len(set(image.convert("L").getdata())) > 2  # drawn, not blank
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def stages(float_acc: float, int8_acc: float, size: int) -> dict:
    return {
        "float": {"accuracy": float_acc},
        "tflite_int8": {"accuracy": int8_acc, "size_bytes": size},
    }


def test_the_gate_blesses_a_good_small_file_and_says_why_each_check_passed():
    blessed, reasons = gate(
        stages(0.97, 0.965, 50_000), GatePolicy(min_accuracy=0.95, max_drop_points=1.0), DEVICE
    )

    assert blessed
    assert reasons == [
        "pass: int8 accuracy 96.50% >= minimum 95.00%",
        "pass: int8 loses 0.50 points against the float model (97.00%); allowed 1.00",
        "pass: int8 file 50,000 bytes <= flash budget 100,000 of board",
    ]


@pytest.mark.parametrize(
    ("case", "failed"),
    [
        (stages(0.94, 0.94, 50_000), "FAIL: int8 accuracy 94.00% < minimum 95.00%"),
        (stages(0.99, 0.96, 50_000), "FAIL: int8 loses 3.00 points against the float model"),
        (stages(0.97, 0.965, 100_001), "FAIL: int8 file 100,001 bytes > flash budget 100,000"),
        (
            {**stages(0.97, 0.965, 50_000), "tflite_split": {"accuracy": 0.9}},
            "FAIL: split model (int8 extractor + head) accuracy 90.00% < minimum 95.00%",
        ),
    ],
    ids=["accuracy-below-minimum", "drop-above-max", "file-larger-than-flash", "split-below"],
)
def test_the_gate_refuses_with_the_failing_reason(case, failed):
    blessed, reasons = gate(case, GatePolicy(min_accuracy=0.95, max_drop_points=1.0), DEVICE)

    assert not blessed
    (failure,) = [r for r in reasons if r.startswith("FAIL")]  # only the one check fails
    assert failure.startswith(failed)


def test_the_gate_refuses_a_file_that_is_not_full_integer_or_needs_more_ram_than_the_device():
    policy = GatePolicy(min_accuracy=0.9, max_drop_points=1.0)
    device = DeviceProfile(
        "board", flash_bytes=100_000, ram_bytes=2_000, latency_budget_ms=1, macs_per_ms=1
    )
    fits = {**stages(0.97, 0.965, 50_000)}
    fits["tflite_int8"].update(
        full_integer_problem="", arena_bytes=1_000, arena_source="tflite-micro"
    )
    float_ops = {
        **fits,
        "tflite_int8": {**fits["tflite_int8"], "full_integer_problem": "3 float32 tensors remain"},
    }
    hungry = {**fits, "tflite_int8": {**fits["tflite_int8"], "arena_bytes": 2_001}}

    assert gate(fits, policy, device)[0]
    assert "pass: int8 file is full-integer" in gate(fits, policy, device)[1]
    blessed, reasons = gate(float_ops, policy, device)
    assert not blessed
    assert "FAIL: int8 file is not full-integer: 3 float32 tensors remain" in reasons
    blessed, reasons = gate(hungry, policy, device)
    assert not blessed
    assert (
        reasons[-1] == "FAIL: tensor arena 2,001 bytes (tflite-micro) > RAM budget 2,000 of board"
    )


def test_a_drop_of_exactly_the_allowed_points_passes():
    # One test image in a hundred: 95% -> 94% with one point allowed.
    blessed, reasons = gate(
        stages(0.95, 0.94, 1_000), GatePolicy(min_accuracy=0.90, max_drop_points=1.0), DEVICE
    )

    assert blessed, reasons


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_accuracy": 95.0}, r"gate min_accuracy=95.0; accepted: a number in \[0, 1\]"),
        ({"max_drop_points": -1.0}, "max_drop_points=-1.0; accepted: a number >= 0"),
    ],
)
def test_gate_policy_rejects_percent_for_fraction_and_negative_drops(fields, message):
    with pytest.raises(EdgetuneError, match=message):
        GatePolicy(**fields)


@pytest.fixture(scope="module")
def evaluated(small, convert_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    x_test, y_test = support.model_ready(small.data_dir, "test")
    evaluation = evaluate(
        {"float": small.float.model, "pruned": small.pruned.model, "qat": small.pqat.model},
        {"tflite_float": convert_run.float_file, "tflite_int8": convert_run.int8_file},
        x_test,
        y_test,
        list(support.LABELS),
        GatePolicy(min_accuracy=0.5, max_drop_points=50.0),
        support.ROOMY_DEVICE,
        out,
        latency_runs=3,
    )
    return evaluation.to_dict(), out, x_test, y_test


@pytest.mark.slow
def test_evaluate_scores_every_stage_like_an_independent_count(evaluated, small, convert_run):
    report, _, x_test, y_test = evaluated
    predictions = {
        "float": small.float.model.predict(x_test, verbose=0),
        "pruned": small.pruned.model.predict(x_test, verbose=0),
        "qat": small.pqat.model.predict(x_test, verbose=0),
        "tflite_float": litert.predict(litert.load(str(convert_run.float_file)), x_test),
        "tflite_int8": litert.predict(litert.load(str(convert_run.int8_file)), x_test),
    }

    assert list(report["stages"]) == list(predictions) and report["n_test"] == len(y_test) == 30
    for stage, scores in predictions.items():
        expected = float(np.mean(np.argmax(scores, -1) == y_test))
        assert report["stages"][stage]["accuracy"] == pytest.approx(expected), stage
        assert np.sum(report["stages"][stage]["confusion"]) == 30
    int8 = report["stages"]["tflite_int8"]
    assert int8["size_bytes"] == convert_run.int8_file.stat().st_size
    assert int8["gzip_bytes"] < int8["size_bytes"] and int8["latency_ms_p50"] > 0
    assert "size_bytes" not in report["stages"]["qat"]


@pytest.mark.slow
def test_evaluate_draws_a_confusion_png_per_stage_and_leaves_the_report_to_its_caller(evaluated):
    report, out, _, _ = evaluated

    assert not (out / files.EVALUATION).exists()  # written once, after registration
    assert report["registered_version"] == ""
    for stage in report["stages"]:
        with Image.open(out / files.CONFUSION_PNG.format(stage=stage)) as image:
            assert image.format == "PNG"
    assert report["gate"]["blessed"] is True
    assert report["gate"]["policy"] == {"min_accuracy": 0.5, "max_drop_points": 50.0}
    # accuracy, drop, flash, full-integer, arena: each measured on the real int8 file
    assert [r[:5] for r in report["gate"]["reasons"]] == ["pass:"] * 5
    assert report["stages"]["tflite_int8"]["arena_source"] == "tflite-micro"


def test_evaluate_names_the_missing_stages(tmp_path):
    with pytest.raises(EdgetuneError, match="missing stages: float, tflite_int8"):
        evaluate(
            {"qat": None},
            {"tflite_float": "x.tflite"},
            np.zeros((1, 16, 16, 1)),
            np.zeros(1, np.int32),
            LABELS,
            GatePolicy(),
            DEVICE,
            tmp_path,
        )


def an_evaluation(blessed: bool) -> Evaluation:
    int8 = {"accuracy": 0.9, "per_class": {}, "confusion": [[1]], "size_bytes": 2000,
            "gzip_bytes": 1500, "latency_ms_p50": 0.25}  # fmt: skip
    return Evaluation(
        stages={"float": {"accuracy": 0.92, "per_class": {}, "confusion": [[1]]}, "tflite_int8": int8},
        gate={"blessed": blessed, "reasons": ["pass: a", "FAIL: b"], "policy": {"min_accuracy": 0.5}},
        n_test=30,
    )  # fmt: skip


def test_the_candidate_alias_moves_only_to_a_blessed_file_but_every_file_is_registered():
    blessed, refused = an_evaluation(True).registered("4"), an_evaluation(False).registered("5")

    assert blessed.aliases() == {"candidate": "4"} and refused.aliases() == {}
    assert blessed.registration_tags("run-1") == {"blessed": "True", "run_name": "run-1"}
    assert refused.registration_tags("run-1") == {"blessed": "False", "run_name": "run-1"}


def test_the_evaluation_is_written_once_registered_and_read_back_whole(tmp_path):
    evaluation = an_evaluation(True).registered(5)

    evaluation.write(tmp_path)

    assert Evaluation.read(tmp_path) == evaluation and evaluation.registered_version == "5"
    written = files.read_json(tmp_path / files.EVALUATION)
    assert list(written) == ["stages", "gate", "n_test", "registered_version", "model_tags"]


def test_the_summary_part_keeps_headline_numbers_and_the_gate_with_the_registered_version():
    evaluation = an_evaluation(False).registered("3")

    assert evaluation.summary_part() == {
        "stages": {
            "float": {"accuracy": 0.92},
            "tflite_int8": {"accuracy": 0.9, "size_bytes": 2000, "gzip_bytes": 1500,
                            "latency_ms_p50": 0.25},
        },
        "gate": {"blessed": False, "reasons": ["pass: a", "FAIL: b"], "model_version": "3"},
    }  # fmt: skip
    assert evaluation.metrics() == {
        "float_accuracy": 0.92, "tflite_int8_accuracy": 0.9, "tflite_int8_size_bytes": 2000,
        "tflite_int8_gzip_bytes": 1500, "tflite_int8_latency_ms_p50": 0.25, "blessed": 0,
    }  # fmt: skip
    assert evaluation.accuracies() == {"float_accuracy": 0.92, "tflite_int8_accuracy": 0.9}
    assert evaluation.notes() == ["pass: a", "FAIL: b"]


def test_reading_an_artifact_without_the_evaluation_names_the_missing_file(tmp_path):
    with pytest.raises(EdgetuneError, match=r"evaluation.json: missing; expected the Evaluation"):
        Evaluation.read(tmp_path)
