"""Device profiles and YAML loading: bad values are named with file, field and what is accepted."""

from __future__ import annotations

import pytest
import yaml

from edgetune.config import (
    DeviceProfile,
    device_profile,
    load_device_profiles,
    load_yaml,
)
from edgetune.errors import EdgetuneError

GOOD = {
    "name": "board",
    "flash_bytes": 1000,
    "ram_bytes": 500,
    "latency_budget_ms": 20,
    "macs_per_ms": 1e4,
}


def write_devices(tmp_path, *entries):
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"devices": list(entries)}))
    return path


def test_packaged_profiles_load_with_positive_budgets():
    profiles = load_device_profiles()

    assert "cortex-m7" in profiles and profiles["cortex-m7"].name == "cortex-m7"
    for profile in profiles.values():
        assert min(profile.flash_bytes, profile.ram_bytes) > 0
        assert profile.latency_budget_ms > 0 and profile.macs_per_ms > 0
        # energy estimates need the power, and each says where its figure comes from
        assert profile.active_power_mw and profile.active_power_source
    assert profiles["cortex-m7"].runtime == "tflite-micro"


def test_a_profile_file_round_trips_and_reads_numbers_as_their_types(tmp_path):
    path = write_devices(tmp_path, GOOD)

    profile = device_profile("board", path)

    assert profile == DeviceProfile("board", 1000, 500, 20.0, 1e4)
    assert isinstance(profile.latency_budget_ms, float)
    assert DeviceProfile.from_dict(profile.to_dict()) == profile


def test_unknown_profile_is_named_with_the_known_ones(tmp_path):
    path = write_devices(tmp_path, GOOD, {**GOOD, "name": "other"})
    with pytest.raises(EdgetuneError, match="unknown device profile 'nano'; known: board, other"):
        device_profile("nano", path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flash_bytes": "1 MB"}, "field 'flash_bytes'='1 MB'; must be a valid integer"),
        ({"ram_bytes": True}, "field 'ram_bytes'=True; must be a valid integer"),
        ({"ram_bytes": 0}, "field 'ram_bytes'=0; must be greater than 0"),
        ({"macs_per_ms": -1}, "field 'macs_per_ms'=-1; must be greater than 0"),
        ({"latency_budget_ms": "20"}, "field 'latency_budget_ms'='20'; must be a valid number"),
        ({"name": None}, "field 'name'=None; must be a valid string"),
        ({"flash": 1}, "unknown field 'flash'; accepted: name, flash_bytes, ram_bytes"),
        ({"runtime": "tflm"}, "field 'runtime'='tflm'; must be 'tflite-micro' or 'litert'"),
        ({"active_power_mw": 0.0}, "field 'active_power_mw'=0.0; must be greater than 0"),
    ],
)
def test_bad_fields_are_reported_with_file_entry_and_value(tmp_path, change, message):
    path = write_devices(tmp_path, GOOD, {**GOOD, "name": "second", **change})
    with pytest.raises(EdgetuneError) as error:
        load_device_profiles(path)
    assert str(error.value).startswith(f"{path}: devices[1]")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_field_duplicate_name_and_empty_list_are_refused(tmp_path):
    missing = {k: v for k, v in GOOD.items() if k != "macs_per_ms"}
    with pytest.raises(EdgetuneError, match="missing field 'macs_per_ms'"):
        load_device_profiles(write_devices(tmp_path, missing))
    with pytest.raises(EdgetuneError, match="'board' is defined twice"):
        load_device_profiles(write_devices(tmp_path, GOOD, GOOD))
    with pytest.raises(EdgetuneError, match="non-empty list under 'devices'"):
        load_device_profiles(write_devices(tmp_path))


def test_load_yaml_names_a_missing_file_and_the_line_of_a_syntax_error(tmp_path):
    with pytest.raises(EdgetuneError, match="nope.yaml: file not found"):
        load_yaml(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("devices:\n  - name: a\n  flash: [1, 2\n")
    with pytest.raises(EdgetuneError, match=r"broken.yaml: line \d+ is not valid YAML"):
        load_yaml(broken)
