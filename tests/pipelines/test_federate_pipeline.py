"""The federate pipeline compiles for Kubeflow; the simulated devices' shifts are real shifts."""

import numpy as np
import yaml

from edgetune.components.federate.core import FederateConfig
from edgetune.pipelines.federate_pipeline import compile_federate
from edgetune.pipelines.fleet_sim import KINDS, device_slices, shift


def test_the_federate_pipeline_compiles_with_its_parameters(tmp_path):
    ir = yaml.safe_load(compile_federate(tmp_path / "federate.yaml").read_text())

    assert ir["pipelineInfo"]["name"] == "edgetune-federate"
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {
        "bundle_uri",
        "data_uri",
        "fleet_file",
        "rounds",
        "clip_norm",
        "noise_multiplier",
    } <= set(params)
    assert params["rounds"]["defaultValue"] == 3
    assert list(ir["root"]["dag"]["tasks"]) == ["federate"]


def test_the_pipeline_and_component_defaults_are_the_round_declaration(tmp_path):
    ir = yaml.safe_load(compile_federate(tmp_path / "federate.yaml").read_text())
    pipeline = ir["root"]["inputDefinitions"]["parameters"]
    component = ir["components"]["comp-federate"]["inputDefinitions"]["parameters"]
    declared = FederateConfig().model_dump()

    shared = set(declared) & set(pipeline)
    assert shared == set(declared) - {"train_first"}  # the component always trains first
    for name in shared:
        assert pipeline[name]["defaultValue"] == declared[name], name
        assert component[name]["defaultValue"] == declared[name], name


def test_each_device_gets_its_own_disjoint_shifted_slice():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 8, 8, 1), dtype=np.uint8)
    y = np.arange(300) % 10

    slices = device_slices(x, y, 5, 30)

    assert [d.kind for d in slices] == list(KINDS)
    assert all(len(d.labels) == 30 for d in slices)
    favoured = np.isin(slices[4].labels, [0, 1, 2]).mean()
    assert favoured >= 0.7  # the imbalance device sees mostly a third of the classes
    assert not np.array_equal(shift(x[:3], "rotate"), x[:3])
    assert shift(x[:3], "contrast").max() < x[:3].max()
