"""The zoo registry: entries validated at load, where weights are, and backbones built with them."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from support import models as support

from edgetune.config import packaged_file
from edgetune.errors import EdgetuneError
from edgetune.zoo import registry
from edgetune.zoo.registry import ZooEntry, build_backbone, load_zoo, weights_problem

RAW = {
    "id": "m",
    "architecture": "digitnet",
    "input_shape": [16, 16, 1],
    "normalization": {"scale": 0.5},
    "weights": {"source": "uri", "uri": "/nowhere/m.h5"},
    "params": 1,
    "macs": 2,
    "peak_activation_bytes": 3,
    "top1": 0.5,
}


def write_zoo(tmp_path, *entries):
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"models": list(entries)}))
    return path


def test_packaged_zoo_loads_every_entry_and_entries_round_trip():
    zoo = load_zoo()

    assert "edgetune-digitnet-32" in zoo
    for entry in zoo.values():
        assert entry.weights["source"] in registry.WEIGHT_SOURCES
        assert ZooEntry.from_dict(entry.to_dict()) == entry
    # Defaults: normalisation offset 0, unfreeze 10 layers.
    entry = ZooEntry.from_dict(RAW)
    assert entry.normalization == {"scale": 0.5, "offset": 0.0}
    assert entry.unfreeze_top_layers == 10 and entry.input_shape == (16, 16, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_shape": [16, 16]}, r"\(m\): field 'input_shape'=\[16, 16\]"),
        ({"input_shape": [16, 0, 1]}, "expected \\[height, width, channels\\]"),
        ({"weights": {"source": "s3"}}, "weights.source='s3'; accepted: package, keras-imagenet"),
        ({"top1": "high"}, "field 'top1'='high'; must be a valid number"),
        ({"params": None}, "field 'params'=None; must be a valid integer"),
        ({"architecture": "resnet"}, "field 'architecture'='resnet'; accepted: digitnet, keras:"),
        ({"feature_layr": "x"}, "unknown field 'feature_layr'; accepted: id, architecture"),
        ({"macs": -1}, "field 'macs'=-1; must be greater than or equal to 0"),
    ],
)
def test_bad_entries_are_reported_with_file_index_id_and_field(tmp_path, change, message):
    path = write_zoo(tmp_path, {**RAW, "id": "ok"}, {**RAW, **change})
    with pytest.raises(EdgetuneError, match=message) as error:
        load_zoo(path)
    assert str(error.value).startswith(f"{path}: models[1]")


def test_duplicate_ids_and_an_empty_zoo_are_refused(tmp_path):
    with pytest.raises(EdgetuneError, match="zoo id 'm' is defined twice"):
        load_zoo(write_zoo(tmp_path, RAW, RAW))
    with pytest.raises(EdgetuneError, match="non-empty list under 'models'"):
        load_zoo(write_zoo(tmp_path))


def test_an_entry_without_the_key_its_weight_source_needs_is_refused_at_load():
    with pytest.raises(EdgetuneError, match="weights.uri"):
        ZooEntry.from_dict({**RAW, "weights": {"source": "uri"}})


def package_entry(file: str, sha256: str = "") -> ZooEntry:
    weights = {"source": "package", "file": file, **({"sha256": sha256} if sha256 else {})}
    return ZooEntry.from_dict({**RAW, "weights": weights})


def test_packaged_weights_must_exist_and_match_their_sha256():
    # registry.yaml ships in the zoo package: a stand-in for a weights file that is there.
    shipped = packaged_file("edgetune.zoo", "registry.yaml")
    digest = hashlib.sha256(shipped.read_bytes()).hexdigest()

    assert weights_problem(package_entry("registry.yaml", digest)) is None
    assert weights_problem(package_entry("registry.yaml")) is None  # no sha256: not checked
    mismatch = weights_problem(package_entry("registry.yaml", "0" * 64))
    assert mismatch == "packaged weights registry.yaml do not match their sha256 in the registry"
    missing = weights_problem(package_entry("absent.weights.h5"))
    assert "absent.weights.h5 missing (run `make zoo`)" in missing


def test_imagenet_weights_need_the_keras_cache_or_permission_to_download(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "KERAS_CACHE", tmp_path)
    entry = ZooEntry.from_dict(
        {**RAW, "weights": {"source": "keras-imagenet", "cache_file": "w.h5"}}
    )

    assert "not in the Keras cache" in weights_problem(entry)
    assert "allow_download=false" in weights_problem(entry)
    assert weights_problem(entry, allow_download=True) is None
    (tmp_path / "w.h5").write_bytes(b"cached")
    assert weights_problem(entry) is None


def test_uri_weights_are_checked_where_they_are(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"x")

    def problem(uri: str) -> str | None:
        return weights_problem(
            ZooEntry.from_dict({**RAW, "weights": {"source": "uri", "uri": uri}})
        )

    assert problem(str(tmp_path / "w.h5")) is None
    assert problem(f"file://{tmp_path / 'w.h5'}") is None
    assert problem(str(tmp_path / "gone.h5")) == f"weights not found at {tmp_path / 'gone.h5'}"
    assert "unreachable" in problem("nosuchprotocol://bucket/w.h5")


def saved_digitnet(path):
    """A randomly initialised tiny digitnet and the H5 file of its weights."""
    from edgetune.zoo.architectures import digitnet

    model = digitnet((support.SIZE, support.SIZE, 1), width=support.WIDTH)
    model.save_weights(str(path), save_format="h5")
    return model


def same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_build_backbone_loads_uri_weights_and_pretrained_false_does_not(tmp_path):
    source = saved_digitnet(tmp_path / "w.h5")

    for uri in (str(tmp_path / "w.h5"), f"file://{tmp_path / 'w.h5'}"):
        assert same_weights(build_backbone(support.tiny_entry(uri)), source)
    scratch = build_backbone(support.tiny_entry(str(tmp_path / "w.h5")), pretrained=False)
    assert not same_weights(scratch, source)
    assert scratch.output_shape == source.output_shape


def test_build_backbone_names_the_entry_when_weights_are_missing(tmp_path):
    with pytest.raises(EdgetuneError, match="zoo entry tiny: weights not found at"):
        build_backbone(support.tiny_entry(str(tmp_path / "gone.h5")))


def test_an_entry_is_validated_however_it_is_made():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="accepted: digitnet"):
        support.tiny_entry("", architecture="resnet")
