"""The select_model KFP wrapper's python_func: selection.json, metadata and its MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import tracking
from edgetune.components.select_model.component import select_model
from edgetune.errors import EdgetuneError


@pytest.fixture
def configs(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"weights")
    devices = tmp_path / "devices.yaml"
    devices.write_text(yaml.safe_dump({"devices": [support.ROOMY_DEVICE.to_dict()]}))
    common = {"architecture": "digitnet", "input_shape": [16, 16, 1], "normalization": {},
              "params": 1000, "macs": 1000, "peak_activation_bytes": 1000}  # fmt: skip
    zoo = tmp_path / "registry.yaml"
    zoo.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        **common,
                        "id": "a",
                        "top1": 0.7,
                        "weights": {"source": "uri", "uri": str(tmp_path / "w.h5")},
                    },
                    {
                        **common,
                        "id": "b",
                        "top1": 0.9,
                        "weights": {"source": "uri", "uri": str(tmp_path / "gone.h5")},
                    },
                ]
            }  # fmt: skip
        )
    )
    return {"devices_file": str(devices), "zoo_file": str(zoo)}


def test_writes_the_selection_and_logs_the_choice(configs, tracking_uri, run_name, tmp_path):
    selection = dsl.Artifact(uri=str(tmp_path / "selection"))

    chosen = select_model.python_func(
        device_profile="roomy",
        selection=selection,
        run_name=run_name,
        tracking_uri=tracking_uri,
        **configs,
    )

    assert chosen == "a"
    written = files.read_json(Path(selection.path) / files.SELECTION)
    assert written["zoo_id"] == "a" and written["device"]["name"] == "roomy"
    assert written["rejected"]["b"][0].startswith("weights not found at")
    assert selection.metadata == {"zoo_id": "a", "params": 1000, "input_shape": [16, 16, 1]}
    run = support.runs_of(tracking_uri, run_name)["select_model"]
    assert run.info.status == "FINISHED" and run.data.tags["zoo_id"] == "a"
    assert run.data.params["device_profile"] == "roomy"
    part = mlflow.MlflowClient(tracking_uri).download_artifacts(
        run.info.run_id, tracking.SUMMARY_PART
    )
    assert json.loads(Path(part).read_text())["model"]["device"] == "roomy"


def test_an_unknown_device_fails_the_run_with_the_reason(configs, tracking_uri, run_name, tmp_path):
    with pytest.raises(EdgetuneError, match="unknown device profile 'toaster'; known: roomy"):
        select_model.python_func(
            device_profile="toaster",
            selection=dsl.Artifact(uri=str(tmp_path / "selection")),
            run_name=run_name,
            tracking_uri=tracking_uri,
            **configs,
        )

    run = support.runs_of(tracking_uri, run_name)["select_model"]
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.TAG_ERROR].startswith("EdgetuneError: unknown device profile")
    assert not (tmp_path / "selection").exists()
