"""Run parameters: presets, --set overrides, coercion, and the checks that fail a bad run in a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgetune.errors import EdgetuneError
from edgetune.pipelines import params
from edgetune.pipelines.parameters import DECLARED


@pytest.fixture
def tiny(tmp_path) -> dict:
    """The tiny preset on a data folder that exists."""
    (tmp_path / "digits" / "0").mkdir(parents=True)
    return params.check_parameters(
        {**params.load_preset("tiny"), "data_uri": str(tmp_path / "digits")}
    )


def test_every_packaged_preset_passes_every_check(tmp_path):
    for name in ("default", "tiny"):
        preset = params.check_parameters(params.load_preset(name))
        params.step_configs(preset)
        params.validate_values({**preset, "data_uri": str(tmp_path)})


def test_the_default_preset_holds_only_what_is_not_a_default():
    assert params.load_preset("default") == {"data_uri": "data/digits"}
    resolved = params.resolve_preset("default")
    assert set(resolved) == set(DECLARED)
    assert resolved["head_epochs"] == 4 and resolved["augment"]["copies"] == 2


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
    nested = params.apply_overrides({"augment": {"copies": 2, "zoom": 0.2}}, ["augment.copies=0"])
    assert nested == {"augment": {"copies": 0, "zoom": 0.2}}
    assert params.apply_overrides({}, ["augment.rotate_degrees=5"]) == {
        "augment": {"rotate_degrees": 5}
    }
    for bad in ("head_epochs.x=1", "augment.=1", "nope.x=1"):
        with pytest.raises(EdgetuneError, match="is not a mapping parameter"):
            params.apply_overrides(base, [bad])
    for bad in ("head_epochs", "=3", " =3"):
        with pytest.raises(EdgetuneError, match="expected KEY=VALUE"):
            params.apply_overrides(base, [bad])


def test_an_unknown_parameter_is_named_with_the_accepted_ones(tiny):
    with pytest.raises(EdgetuneError, match="unknown pipeline parameter 'head_epoch'; accepted: "):
        params.check_parameters({**tiny, "head_epoch": 2})


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("head_epochs", "three", "an integer >= 0"),
        ("head_epochs", 2.5, "an integer >= 0"),
        ("batch_size", True, "an integer >= 1"),
        ("allow_download", 1, "true or false"),
        ("min_accuracy", "high", "a number in [0, 1]"),
        ("device_profile", 7, "a non-empty string"),
        ("data_uri", "", "a non-empty string"),
        ("target_sparsity", 1.5, "a number in [0, 1)"),
        ("min_per_class", 1, "an integer >= 2"),
        ("val_fraction", 0, "a number in (0, 1)"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_named_with_what_is_accepted(
    tiny, key, value, accepted
):
    with pytest.raises(EdgetuneError) as error:
        params.check_parameters({**tiny, key: value})
    assert str(error.value) == f"pipeline parameter {key}={value!r}; accepted: {accepted}"


def test_an_int_is_a_float_of_the_declared_type_and_data_uri_is_required(tiny):
    out = params.check_parameters({**tiny, "min_accuracy": 1, "max_drop_points": 0})

    assert out["min_accuracy"] == 1.0 and type(out["min_accuracy"]) is float
    assert type(out["max_drop_points"]) is float
    for name, value in out.items():  # what kfp receives has exactly the DAG's types
        assert type(value) is DECLARED[name].annotation, name
    no_data = {k: v for k, v in tiny.items() if k != "data_uri"}
    with pytest.raises(EdgetuneError, match="pipeline parameter 'data_uri' is required"):
        params.check_parameters(no_data)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"device_profile": "toaster"}, "unknown device profile 'toaster'"),
        ({"model_id": "resnet-9000"}, "unknown zoo id 'resnet-9000'"),
        ({"prune_epochs": 0}, "pipeline parameter prune_epochs=0; accepted: an integer >= 1"),
        ({"qat_learning_rate": 2.0}, r"qat_learning_rate=2.0; accepted: a number in \(0, 1\)"),
        ({"deploy_timeout_s": 0}, "pipeline parameter deploy_timeout_s=0"),
        ({"head_epochs": 0, "unfreeze_epochs": 0}, "nothing would train"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction = 1"),
        ({"augment": {"copies": 2, "sharpen": 1}}, "augment: unknown field 'sharpen'"),
        ({"tracking_uri": "mongodb://db/x"}, "tracking_uri='mongodb://db/x'; accepted: empty"),
        ({"tracking_uri": "http://"}, "tracking_uri='http://': names no host"),
        ({"data_uri": "nosuch://bucket/x"}, "unknown scheme 'nosuch://'"),
        ({"data_uri": "s3://"}, "names no bucket or path"),
        ({"data_uri": "/no/such/folder"}, "data_uri='/no/such/folder': no such file or folder"),
        ({"signing_key": "/no/key.pem"}, "signing_key='/no/key.pem': no such file"),
        ({"fleet_file": "/no/fleet.yaml"}, "fleet_file='/no/fleet.yaml': no such file"),
        ({"search_students": ["resnet"]}, "search student 'resnet'; accepted: 'teacher' or"),
        ({"search_sparsity": [0.5, 0.5]}, r"search_sparsity=\[0.5, 0.5\] lists a value twice"),
        ({"search_quantization": ["float16"]}, "cortex-m7 runs TFLite Micro, which has no float16"),
    ],
)
def test_bad_values_fail_up_front_naming_the_value(tiny, change, named):
    with pytest.raises(EdgetuneError, match=named):
        params.validate_values(params.check_parameters({**tiny, **change}))


def test_good_uris_pass(tiny, tmp_path):
    for uri in ("", "mlruns", f"sqlite:///{tmp_path}/m.db", "https://mlflow.example.com",
                "postgresql+psycopg2://u@db/mlflow", "databricks"):  # fmt: skip
        params.check_tracking_uri(uri)
    for uri in ("", "mlruns", "sqlite://", "sqlite:///m.db", f"sqlite:///{tmp_path}/m.db",
                f"file://{tmp_path}/mlruns", "http://127.0.0.1:5000"):  # fmt: skip
        params.check_local_tracking_uri(uri)
    with pytest.raises(EdgetuneError, match="folder /no/such does not exist"):
        params.check_local_tracking_uri("sqlite:////no/such/m.db")
    params.check_data_uri(f"file://{tmp_path}")
    params.check_data_uri("memory://bucket/data.parquet")


def test_a_cluster_run_checks_form_not_local_files(tiny):
    remote = {**tiny, "data_uri": "gs://bucket/photos", "fleet_file": "/secrets/fleet.yaml"}
    params.validate_values(remote, local=False)  # the fleet file is a path in the pods
    with pytest.raises(EdgetuneError, match="a relative path means nothing to a cluster"):
        params.validate_values({**tiny, "data_uri": "data/digits"}, local=False)


def test_a_key_that_does_not_parse_is_named(tiny, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    with pytest.raises(EdgetuneError, match="key.pem: not an unencrypted PEM private key"):
        params.validate_values({**tiny, "signing_key": str(key)})


def test_custom_device_and_zoo_files_are_the_ones_validated(tiny, tmp_path):
    devices = tmp_path / "devices.yaml"
    devices.write_text(yaml.safe_dump({"devices": [{
        "name": "edge-box", "flash_bytes": 10, "ram_bytes": 10, "latency_budget_ms": 1,
        "macs_per_ms": 1}]}))  # fmt: skip

    params.validate_values({**tiny, "device_profile": "edge-box", "devices_file": str(devices)})
    with pytest.raises(EdgetuneError, match="unknown device profile 'cortex-m7'; known: edge-box"):
        params.validate_values({**tiny, "devices_file": str(devices)})
    with pytest.raises(EdgetuneError, match="zoo_file='.*nope.yaml': no such file"):
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


def test_the_tracking_schemes_are_ones_mlflow_accepts():
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    assert set(params.TRACKING_SCHEMES) <= set(_tracking_store_registry._registry)


def test_a_model_file_and_its_options_are_checked_up_front(tiny, tmp_path):
    notes = tmp_path / "notes.h5"
    notes.write_text("not a model")

    with pytest.raises(EdgetuneError, match="feature_layer is set but model_uri is empty"):
        params.validate_values({**tiny, "feature_layer": "pool"})
    with pytest.raises(EdgetuneError, match="notes.h5: not a model file"):
        params.validate_values({**tiny, "model_uri": str(notes)})
    with pytest.raises(EdgetuneError, match="gone.keras: no such model file"):
        params.validate_values({**tiny, "model_uri": str(tmp_path / "gone.keras")})
    with pytest.raises(
        EdgetuneError, match="model_normalization='tanh'; accepted: unit, symmetric"
    ):
        params.validate_values({**tiny, "model_uri": str(notes), "model_normalization": "tanh"})
    with pytest.raises(EdgetuneError, match="model_id and model_uri: give one model source"):
        params.validate_values(
            {**tiny, "model_uri": str(notes), "model_id": "edgetune-digitnet-32"}
        )
    with pytest.raises(EdgetuneError, match="model_uri='nope://x.h5': unknown scheme 'nope'"):
        params.validate_values({**tiny, "model_uri": "nope://x.h5"})
