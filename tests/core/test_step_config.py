"""StepConfig: typed, frozen step parameters whose bad values read as one line."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field, ValidationError, model_validator

from edgetune.errors import EdgetuneError
from edgetune.step_config import StepConfig, accepted, raw_errors, value_range


class Toy(StepConfig):
    step: ClassVar[str] = "toy"

    rate: float = Field(0.5, gt=0, lt=1, description="a rate")
    count: int = Field(3, ge=1, description="a count")
    name: str = Field("x", min_length=1, description="a name")
    on: bool = Field(False, description="a switch")
    labels: dict[str, str] = Field(default_factory=dict, description="renames")

    @model_validator(mode="after")
    def _rule(self) -> Toy:
        if self.count == 7 and self.on:
            raise ValueError("toy count 7 cannot be on")
        return self


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rate": 1}, "toy rate=1; accepted: a number in (0, 1)"),
        ({"rate": "0.5"}, "toy rate='0.5'; accepted: a number in (0, 1)"),
        ({"count": 2.0}, "toy count=2.0; accepted: an integer >= 1"),
        ({"count": True}, "toy count=True; accepted: an integer >= 1"),
        ({"name": ""}, "toy name=''; accepted: a non-empty string"),
        ({"on": 1}, "toy on=1; accepted: true or false"),
        ({"labels": {"a": 1}}, "toy labels.a=1; accepted: a mapping (dict[str, str])"),
        ({"colour": "red"}, "toy unknown field 'colour'; accepted: rate, count, name, on, labels"),
        ({"count": 7, "on": True}, "toy count 7 cannot be on"),
    ],
)
def test_a_bad_value_is_one_line_naming_step_field_value_and_range(fields, message):
    with pytest.raises(EdgetuneError) as error:
        Toy(**fields)
    assert str(error.value) == message


def test_a_config_dumps_to_a_plain_mapping_and_is_frozen():
    toy = Toy(rate=0.25, count=2)
    assert toy.model_dump() == {"rate": 0.25, "count": 2, "name": "x", "on": False, "labels": {}}
    with pytest.raises(ValidationError):
        toy.count = 5


def test_raw_errors_hand_pydantic_locations_to_a_caller_that_renames_fields():
    with raw_errors(), pytest.raises(ValidationError) as error:
        Toy.model_validate({"count": 0})
    assert error.value.errors()[0]["loc"] == ("count",)
    with pytest.raises(EdgetuneError):  # outside the block, the one-line error again
        Toy(count=0)


def test_ranges_read_as_intervals():
    fields = Toy.model_fields
    assert value_range(fields["rate"]) == "(0, 1)"
    assert value_range(fields["count"]) == ">= 1"
    assert value_range(fields["on"]) == ""
    assert accepted(fields["count"]) == "an integer >= 1"
