"""select_model: the best zoo entry that fits the device, and a reason for every other one."""

from __future__ import annotations

import hashlib

import pytest
from support import models as support

from edgetune.components.select_model.core import (
    INT8_BYTES_PER_PARAM,
    INT8_FIXED_BYTES,
    judge,
    select_model,
)
from edgetune.config import DeviceProfile, device_profile, packaged_file
from edgetune.errors import EdgetuneError
from edgetune.zoo import registry
from edgetune.zoo.registry import ZooEntry, load_zoo

# 1 MiB flash, 256 KiB RAM, 100 ms at 100k MACs/ms: 10 M MACs.
DEVICE = DeviceProfile("board", 1 << 20, 256 << 10, 100.0, 100_000.0)


def entry(id: str, weights: dict, **costs) -> ZooEntry:
    fields = {"params": 100_000, "macs": 1_000_000, "peak_activation_bytes": 50_000, "top1": 0.5}
    return ZooEntry.from_dict(
        {
            "id": id,
            "architecture": "digitnet",
            "input_shape": [16, 16, 1],
            "normalization": {},
            "weights": weights,
            **{**fields, **costs},
        }
    )


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """Weight sources that are there, and ones that are not, of every kind."""
    (tmp_path / "w.h5").write_bytes(b"weights")
    monkeypatch.setattr(registry, "KERAS_CACHE", tmp_path / "keras")  # an empty Keras cache
    shipped = packaged_file("edgetune.zoo", "registry.yaml")  # a file that ships in the package
    return {
        "here": {"source": "uri", "uri": str(tmp_path / "w.h5")},
        "gone": {"source": "uri", "uri": str(tmp_path / "gone.h5")},
        "not_cached": {"source": "keras-imagenet", "cache_file": "net.h5"},
        "bad_sha": {"source": "package", "file": "registry.yaml", "sha256": "0" * 64},
        "good_sha": {
            "source": "package",
            "file": "registry.yaml",
            "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest(),
        },
    }


@pytest.fixture
def zoo(weights):
    entries = [
        entry("small", weights["here"], top1=0.6),
        entry("best-fit", weights["good_sha"], top1=0.8),
        entry("too-big", weights["here"], params=2_000_000, top1=0.99),
        entry("too-hungry", weights["here"], peak_activation_bytes=300_000, top1=0.98),
        entry("too-slow", weights["here"], macs=20_000_000, top1=0.97),
        entry("no-file", weights["gone"], top1=0.96),
        entry("not-cached", weights["not_cached"], top1=0.95),
        entry("tampered", weights["bad_sha"], top1=0.94),
    ]
    return {e.id: e for e in entries}


def test_picks_the_most_accurate_entry_that_fits_and_says_why_each_other_was_rejected(zoo):
    selection = select_model(zoo, DEVICE)

    assert selection.entry.id == "best-fit" and selection.device == DEVICE
    verdicts = {c.id: c for c in selection.candidates}
    assert [c.id for c in selection.candidates if c.chosen] == ["best-fit"]
    reasons = {id: " | ".join(c.reasons) for id, c in verdicts.items()}
    assert reasons["too-big"] == "needs ~2.1 MiB flash at int8 > 1.0 MiB on board"
    assert reasons["too-hungry"] == "needs ~293 KiB activation RAM > 256 KiB on board"
    assert reasons["too-slow"] == "~200 ms per inference (20.0 M MACs) > budget 100 ms"
    assert reasons["no-file"].startswith("weights not found at") and "gone.h5" in reasons["no-file"]
    assert "not in the Keras cache" in reasons["not-cached"]
    assert reasons["tampered"] == (
        "packaged weights registry.yaml do not match their sha256 in the registry"
    )
    assert reasons["small"] == "fits, but top-1 0.600 < 0.800 of best-fit"  # outranked
    assert selection.to_dict()["rejected"] == {
        id: list(c.reasons) for id, c in verdicts.items() if id != "best-fit"
    }


def test_a_fitting_entry_from_the_asked_domain_beats_a_more_accurate_one(zoo, weights):
    zoo["digits"] = entry("digits", weights["here"], top1=0.3, domain="handwritten-digits")

    selection = select_model(zoo, DEVICE, domain="handwritten-digits")

    assert selection.entry.id == "digits"
    best_fit = next(c for c in selection.candidates if c.id == "best-fit")
    assert best_fit.reasons == ("fits, but pretrained on another domain, not handwritten-digits",)


def test_model_id_takes_that_entry_if_it_fits_and_stops_the_run_if_not(zoo):
    assert select_model(zoo, DEVICE, model_id="small").entry.id == "small"
    passed_over = {c.id: c.reasons for c in select_model(zoo, DEVICE, model_id="small").candidates}
    assert passed_over["best-fit"] == ("fits, but model_id=small was asked for",)

    with pytest.raises(EdgetuneError) as error:
        select_model(zoo, DEVICE, model_id="too-slow")
    message = str(error.value)
    assert "no zoo model fits device profile 'board'" in message
    assert "too-slow: ~200 ms per inference" in message and "best-fit" not in message


def test_an_unknown_model_id_is_named_with_the_known_ones(zoo):
    with pytest.raises(EdgetuneError, match="unknown zoo id 'resnet'; known: best-fit, no-file"):
        select_model(zoo, DEVICE, model_id="resnet")


def test_a_device_nothing_fits_raises_with_every_entrys_reasons():
    tiny = DeviceProfile("sensor", 64 << 10, 16 << 10, 5.0, 1_000.0)

    with pytest.raises(EdgetuneError) as error:
        select_model(load_zoo(), tiny)

    message = str(error.value)
    assert message.startswith("no zoo model fits device profile 'sensor' (")
    for id in load_zoo():
        assert f"{id}: needs ~" in message  # every entry, each with its flash reason first
    assert "activation RAM" in message and "per inference" in message


def test_downloads_allowed_lift_the_cache_rule_but_not_the_size_rules(zoo):
    selection = select_model(zoo, DEVICE, allow_download=True)

    assert selection.entry.id == "not-cached"  # 0.95: now the best that fits
    verdict = {c.id: c for c in selection.candidates}
    assert verdict["too-big"].fits is False


def test_judge_estimates_the_int8_footprint_and_latency(weights):
    candidate = judge(entry("e", weights["here"], params=200_000, macs=3_000_000), DEVICE)

    assert candidate.estimated_flash_bytes == int(200_000 * INT8_BYTES_PER_PARAM + INT8_FIXED_BYTES)
    assert candidate.estimated_ram_bytes == 50_000
    assert candidate.estimated_latency_ms == pytest.approx(30.0)
    assert candidate.fits and candidate.reasons == ()


def test_the_packaged_zoo_gives_a_cortex_m7_the_shipped_digit_backbone():
    zoo = load_zoo()

    selection = select_model(zoo, device_profile("cortex-m7"), domain="handwritten-digits")

    assert selection.entry.id == "edgetune-digitnet-32"
    # The weights file that ships matches the sha256 the registry records for it.
    assert registry.weights_problem(zoo["edgetune-digitnet-32"]) is None
    big = next(c for c in selection.candidates if c.id == "keras-efficientnet-b0-224")
    assert any("flash at int8" in reason for reason in big.reasons)  # 4 M params > 2 MiB


def test_a_model_file_is_the_source_when_given_and_judged_on_its_own_costs(tmp_path):
    import dataclasses

    import tf_keras as keras

    from edgetune.components.select_model.core import select_source

    image = keras.Input((16, 16, 1), name="pixels")
    x = keras.layers.Conv2D(8, 3, name="body")(image)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(image, keras.layers.Dense(3, activation="softmax", name="old")(x)).save(
        tmp_path / "mine.h5"
    )
    roomy = support.ROOMY_DEVICE

    chosen = select_source({}, roomy, model_uri=str(tmp_path / "mine.h5"))

    assert chosen.entry.architecture == "model-file" and chosen.entry.input_shape == (16, 16, 1)
    assert chosen.entry.arguments == {"feature_layer": "pool"}
    assert chosen.entry.macs == 14 * 14 * 8 * 9 and chosen.entry.params == 80
    report = chosen.to_dict()["model_file"]
    assert report["kind"] == "keras2-h5" and report["feature_layer"] == "pool"
    tiny_ram = dataclasses.replace(roomy, name="tiny", ram_bytes=100)
    with pytest.raises(
        EdgetuneError,
        match=r"mine.h5 does not fit device profile 'tiny' \(.*activation RAM > 0 KiB",
    ):
        select_source({}, tiny_ram, model_uri=str(tmp_path / "mine.h5"))
    with pytest.raises(EdgetuneError, match="feature_layer='pol' is not a layer.*nearest: pool"):
        select_source({}, roomy, model_uri=str(tmp_path / "mine.h5"), feature_layer="pol")
