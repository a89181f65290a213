"""The int8 file as an MLflow pyfunc model, loaded from the registry in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from support import agents

from edgetune.components.common import tracking
from edgetune.lineage import TAG_GIT_COMMIT

pytestmark = pytest.mark.slow

LOAD_AND_PREDICT = """
import json, sys
import numpy as np
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
pixels = np.array(json.loads(sys.argv[2]), dtype=np.uint8)
out = model.predict(pixels)
print(json.dumps({"labels": out["label"].tolist(), "classes": out["class_index"].tolist(),
                  "edgetune_loaded": "edgetune" in sys.modules}))
"""


def test_the_registered_int8_model_loads_by_alias_and_predicts_in_a_fresh_process(
    tracking_uri, run_name, model_file, smoke_set, tmp_path
):
    spec_file = tmp_path / "preprocessing.json"
    spec_file.write_text(json.dumps(agents.SPEC.to_dict()))
    name = f"edgetune-test-{run_name}"[:200]
    with tracking.component_run("evaluate", run_name=run_name, tracking_uri=tracking_uri):
        version = tracking.log_int8_model(
            model_file, spec_file, smoke_set[0][:2], name=name, tags={"gate.min_accuracy": "0.3"}
        )
    tracking.set_model_alias("champion", version, name=name, tracking_uri=tracking_uri)

    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "MLFLOW_TRACKING_URI": tracking_uri}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, f"models:/{name}@champion",
         json.dumps(smoke_set[0].tolist())],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["classes"] == smoke_set[1].tolist()  # what LiteRT itself answers
    assert result["labels"] == [agents.SPEC.labels[i] for i in smoke_set[1]]
    assert result["edgetune_loaded"] is False  # the model's code travels with it

    client = mlflow.MlflowClient(tracking_uri)
    mv = client.get_model_version(name, version)
    assert mv.tags["gate.min_accuracy"] == "0.3" and TAG_GIT_COMMIT in mv.tags
    model = mlflow.models.get_model_info(f"models:/{name}/{version}")
    assert model.signature.inputs.inputs[0].type == np.dtype("uint8")
    files = mlflow.artifacts.download_artifacts(
        f"models:/{name}@champion", dst_path=str(tmp_path / "m")
    )
    assert (tmp_path / "m" / "artifacts" / "model.tflite").read_bytes() == model_file.read_bytes()
    assert files
