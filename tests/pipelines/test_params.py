"""Run parameters: presets, --set overrides, and the checks that fail a bad run in a second."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from edgetune.errors import EdgetuneError
from edgetune.pipelines import params


@pytest.fixture
def tiny() -> dict:
    return params.load_preset("tiny")


def test_every_packaged_preset_passes_every_check():
    for name in ("default", "tiny"):
        preset = params.load_preset(name)
        assert params.check_parameters(preset) is preset
        params.validate_values(preset)


def test_a_preset_is_a_packaged_name_or_a_yaml_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data_uri: /data/x\nhead_epochs: 2\n")

    assert params.load_preset(str(path)) == {"data_uri": "/data/x", "head_epochs": 2}
    assert params.load_preset("tiny")["head_epochs"] == 1
    with pytest.raises(EdgetuneError, match="unknown preset 'huge'; packaged: default, tiny"):
        params.load_preset("huge")
    path.write_text("- a list\n")
    with pytest.raises(EdgetuneError, match="expected a mapping of pipeline parameters"):
        params.load_preset(str(path))


def test_overrides_are_read_as_yaml_on_a_copy():
    base = {"head_epochs": 1}

    out = params.apply_overrides(
        base,
        [
            "head_epochs=3",
            "min_accuracy=0.5",
            "allow_download=true",
            "augment={copies: 0}",
            "model_id=",
            "data_uri = /data/digits",
        ],  # fmt: skip
    )

    assert out == {
        "head_epochs": 3,
        "min_accuracy": 0.5,
        "allow_download": True,
        "augment": {"copies": 0},
        "model_id": "",
        "data_uri": "/data/digits",  # spaces around "=" are not part of key or value
    }
    assert base == {"head_epochs": 1}
    for bad in ("head_epochs", "=3"):
        with pytest.raises(EdgetuneError, match=f"--set '{bad}': expected KEY=VALUE"):
            params.apply_overrides(base, [bad])


def test_an_unknown_parameter_is_named_with_the_accepted_ones(tiny):
    with pytest.raises(EdgetuneError, match="unknown pipeline parameter 'head_epoch'; accepted: "):
        params.check_parameters({**tiny, "head_epoch": 2})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("head_epochs", "three", "int"),
        ("head_epochs", 2.5, "int"),
        ("batch_size", True, "int"),
        ("allow_download", 1, "bool"),
        ("min_accuracy", "high", "float"),
        ("device_profile", 7, "str"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_the_expected_type(tiny, key, value, expected):
    with pytest.raises(EdgetuneError) as error:
        params.check_parameters({**tiny, key: value})
    assert str(error.value) == f"pipeline parameter {key}={value!r}; expected {expected}"


def test_an_int_is_a_float_and_data_uri_is_required(tiny):
    params.check_parameters({**tiny, "min_accuracy": 1, "max_drop_points": 0})
    no_data = {k: v for k, v in tiny.items() if k != "data_uri"}
    with pytest.raises(EdgetuneError, match="pipeline parameter 'data_uri' is required"):
        params.check_parameters(no_data)
    assert params.pipeline_parameters()["data_uri"] is inspect.Parameter.empty


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"target_sparsity": 1.0}, "prune target_sparsity=1.0"),
        ({"device_profile": "toaster"}, "unknown device profile 'toaster'"),
        ({"model_id": "resnet-9000"}, "unknown zoo id 'resnet-9000'"),
        ({"prune_epochs": 0}, "prune epochs=0"),
        ({"qat_learning_rate": 2.0}, "qat learning_rate=2.0"),
        ({"head_epochs": 0, "unfreeze_epochs": 0}, "nothing would train"),
        ({"min_accuracy": 95.0}, "gate min_accuracy=95.0"),
        ({"augment": {"copies": 2, "sharpen": 1}}, "unknown field 'sharpen'"),
    ],
)
def test_bad_values_fail_up_front_naming_the_value(tiny, change, named):
    run = params.check_parameters({**tiny, **change})

    with pytest.raises(EdgetuneError, match=named):
        params.validate_values(run)


def test_custom_device_and_zoo_files_are_the_ones_validated(tiny, tmp_path):
    devices = tmp_path / "devices.yaml"
    devices.write_text(yaml.safe_dump({"devices": [{
        "name": "edge-box", "flash_bytes": 10, "ram_bytes": 10, "latency_budget_ms": 1,
        "macs_per_ms": 1}]}))  # fmt: skip

    params.validate_values({**tiny, "device_profile": "edge-box", "devices_file": str(devices)})
    with pytest.raises(EdgetuneError, match="unknown device profile 'cortex-m7'; known: edge-box"):
        params.validate_values({**tiny, "devices_file": str(devices)})
    with pytest.raises(EdgetuneError, match="nope.yaml: file not found"):
        params.validate_values({**tiny, "zoo_file": str(tmp_path / "nope.yaml")})


def test_local_paths_become_absolute_and_remote_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    out = params.resolve_file_params(
        {
            "data_uri": "data/digits",
            "zoo_file": "file://zoo.yaml",
            "fleet_file": "s3://bucket/fleet.yaml",
            "devices_file": "",
            "seed": 0,
        }  # fmt: skip
    )

    assert out["data_uri"] == str(tmp_path / "data" / "digits")
    assert out["zoo_file"] == str(tmp_path / "zoo.yaml")
    assert out["fleet_file"] == "s3://bucket/fleet.yaml"
    assert out["devices_file"] == "" and out["seed"] == 0
    assert params.local_data_path("gs://b/x") is None
    assert params.local_data_path("~/x") == Path.home() / "x"
