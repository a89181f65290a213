"""`edgetune zoo build` writes weights that the zoo then loads (MNIST training itself stubbed)."""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pytest

from edgetune import files
from edgetune.zoo import pretrain
from edgetune.zoo.registry import ZooEntry, build_backbone, load_zoo


@pytest.fixture
def built_weights(tmp_path, monkeypatch):
    """`zoo build --out <tmp>/digitnet_mnist.weights.h5` with an untrained backbone."""
    from edgetune.zoo.architectures import digitnet

    backbone = digitnet(pretrain.INPUT_SHAPE)
    report = {"held_out_accuracy": 0.5, "train_seconds": 0.0}
    monkeypatch.setattr(pretrain, "pretrain", lambda epochs, seed=0: (backbone, dict(report)))
    out = tmp_path / pretrain.WEIGHTS_FILE

    assert pretrain.main(argparse.Namespace(out=str(out), epochs=1)) == 0
    return backbone, out


def test_zoo_build_writes_the_weights_and_a_report_with_their_sha256(built_weights):
    _, out = built_weights

    report = files.read_json(out.with_name(pretrain.REPORT_FILE))

    assert report["weights_file"] == pretrain.WEIGHTS_FILE
    assert report["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_record_in_registry_rewrites_only_the_digitnet_entry(tmp_path):
    registry = tmp_path / "registry.yaml"
    registry.write_text((pretrain.packaged_file("edgetune.zoo", "registry.yaml")).read_text())

    pretrain.record_in_registry(registry, "ab" * 32, 0.98765)

    zoo, packaged = load_zoo(registry), load_zoo()
    assert zoo[pretrain.ZOO_ID].weights["sha256"] == "ab" * 32
    assert zoo[pretrain.ZOO_ID].top1 == 0.9877
    assert {k: v for k, v in zoo.items() if k != pretrain.ZOO_ID} == {
        k: v for k, v in packaged.items() if k != pretrain.ZOO_ID
    }


def test_weights_written_by_zoo_build_load_into_the_backbone(built_weights):
    """The file is written under a temporary name (legacy H5 layout) and renamed; tf_keras
    would read a final name ending in ".weights.h5" as the Keras 3 layout and fail.
    """
    backbone, out = built_weights
    entry = load_zoo()[pretrain.ZOO_ID]
    # The packaged entry, pointed at the freshly written file (same name, same loader).
    moved = ZooEntry.from_dict({**entry.to_dict(), "weights": {"source": "uri", "uri": str(out)}})

    loaded = build_backbone(moved)

    for a, b in zip(loaded.get_weights(), backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
