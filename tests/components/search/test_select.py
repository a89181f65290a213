"""The selection rule: smallest that passes; never worse than a comparable champion."""

import pytest

from edgetune.components.search.core import (
    CandidateSpec,
    Champion,
    Scored,
    SearchConfig,
    candidates,
    champion_from,
    select,
)
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError

MCU = DeviceProfile("mcu", flash_bytes=100_000, ram_bytes=50_000, latency_budget_ms=10.0,
                    macs_per_ms=1e5, runtime="tflite-micro")  # fmt: skip

FLOAT_ACCURACY = 0.95
SCORED = [
    Scored("big", 0.95, flash_bytes=90_000, arena_bytes=30_000, latency_ms=2.0),
    Scored("small", 0.945, flash_bytes=40_000, arena_bytes=20_000, latency_ms=1.0),
    Scored("tiny-inaccurate", 0.90, flash_bytes=20_000, arena_bytes=10_000, latency_ms=0.5),
    Scored("huge", 0.96, flash_bytes=200_000, arena_bytes=10_000, latency_ms=1.0),
    Scored(
        "no-micro",
        0.95,
        flash_bytes=30_000,
        arena_bytes=10_000,
        latency_ms=1.0,
        tflm_supported=False,
    ),  # fmt: skip
]


def test_smallest_candidate_within_the_budget_that_fits_is_chosen():
    picked = select(SCORED, FLOAT_ACCURACY, max_drop_points=1.0, device=MCU)

    assert picked.chosen == "small"
    assert "5.00 points below the float teacher" in picked.rejected["tiny-inaccurate"][0]
    assert picked.rejected["huge"] == ["200000 B > flash 100000 B"]
    assert picked.rejected["no-micro"] == ["TFLite Micro cannot run it"]
    assert "big" not in picked.rejected


def test_a_file_the_gate_would_not_ship_is_rejected_with_its_reason():
    int16 = Scored("t-s0-int16x8", 0.95, 20_000, 9_000, 1.0, tflm_supported=True,
                   ship_problem="input/output x is not int8; the device runs int8 only")  # fmt: skip

    picked = select([*SCORED, int16], FLOAT_ACCURACY, 1.0, MCU)

    assert picked.chosen == "small"
    assert picked.rejected["t-s0-int16x8"] == [
        "cannot ship: input/output x is not int8; the device runs int8 only"
    ]


def test_ties_on_flash_go_to_the_smaller_arena_then_the_faster():
    same = [
        Scored("a", 0.95, 40_000, 20_000, 1.0),
        Scored("b", 0.95, 40_000, 10_000, 3.0),
        Scored("c", 0.95, 40_000, 10_000, 2.0),
    ]
    assert select(same, FLOAT_ACCURACY, 1.0, MCU).chosen == "c"


def test_a_better_champion_is_not_replaced():
    champion = Champion("7", accuracy=0.99)

    picked = select(SCORED, FLOAT_ACCURACY, 1.0, MCU, champion, champion_margin_points=1.0)

    assert picked.chosen is None
    assert "below champion v7's 0.9900 - 1.0 points" in picked.rejected["small"][-1]
    assert picked.champion == {"version": "7", "accuracy": 0.99, "reason": ""}


def test_a_champion_within_the_margin_is_replaced_by_the_smaller_candidate():
    picked = select(SCORED, FLOAT_ACCURACY, 1.0, MCU, Champion("7", 0.95), 0.5)
    assert picked.chosen == "small"


def test_a_champion_with_other_classes_or_input_is_not_compared_and_says_why():
    other = champion_from("3", ["cat", "dog"], [1, 8, 8, 1], ["0", "1"], [1, 8, 8, 1], 0.99)
    assert other.accuracy is None
    assert (
        other.reason == "champion v3 has classes ['cat', 'dog'], this run ['0', '1']: not compared"
    )
    resized = champion_from("3", ["0", "1"], [1, 16, 16, 1], ["0", "1"], [1, 8, 8, 1], 0.99)
    assert "takes input [1, 16, 16, 1], this run [1, 8, 8, 1]" in resized.reason

    picked = select(SCORED, FLOAT_ACCURACY, 1.0, MCU, other)
    assert picked.chosen == "small" and "not compared" in picked.champion["reason"]


def test_the_space_expands_to_every_combination():
    config = SearchConfig(sparsity=[0.0, 0.5], quantization=["ptq_int8", "qat_int8"],
                          students=["teacher", "digitnet@0.25"])  # fmt: skip
    specs = candidates(config, MCU)

    assert len(specs) == 8
    assert specs[0].name == "teacher-s0-ptq_int8" and specs[0].path == "plain+ptq_int8"
    assert specs[-1].name == "digitnet@0.25-s50-qat_int8" and specs[-1].path == "distil+qat_int8"
    assert [CandidateSpec.from_dict(s.to_dict()) for s in specs] == specs


def test_the_search_turned_off_is_the_fixed_recipe_at_target_sparsity():
    off = SearchConfig(enabled=False, students=["teacher", "digitnet@0.25"])

    assert candidates(off, MCU, fixed_sparsity=0.6) == [CandidateSpec("teacher", 0.6, "qat_int8")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sparsity": []}, "sparsity"),
        ({"sparsity": [0.5, 0.5]}, "search_sparsity=[0.5, 0.5] lists a value twice"),
        ({"sparsity": [1.0]}, "outside 0 <= s < 1"),
        ({"quantization": ["int4"]}, "quantization"),
        (
            {"students": ["resnet"]},
            "search student 'resnet'; accepted: 'teacher' or 'digitnet@<width>'",
        ),
    ],
)
def test_an_empty_or_contradictory_space_is_one_line(fields, message):
    with pytest.raises(EdgetuneError) as error:
        SearchConfig(**fields)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_float16_only_cannot_ship_to_a_microcontroller():
    with pytest.raises(EdgetuneError, match="mcu runs TFLite Micro, which has no float16"):
        candidates(SearchConfig(quantization=["float16"]), MCU)
