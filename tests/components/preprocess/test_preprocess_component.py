"""The preprocess KFP wrapper's python_func: model-sized splits from the two typed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from kfp import dsl
from support import models as support

from edgetune import files
from edgetune.components.common import training
from edgetune.components.preprocess.component import preprocess
from edgetune.components.preprocess.core import PreprocessReport
from edgetune.components.select_model.core import Selection

from .conftest import CLASSES


def test_sizes_splits_to_the_chosen_entry_and_labels_them_by_the_ingested_classes(
    dataset_dir, tracking_uri, run_name, tmp_path
):
    entry = support.tiny_entry("unused.h5", input_shape=(12, 10, 1),
                               normalization={"scale": 2 / 255, "offset": -1.0})  # fmt: skip
    selection = Selection(entry=entry, device=support.ROOMY_DEVICE, candidates=())
    selection.write(tmp_path / "selection")
    data = dsl.Dataset(uri=str(tmp_path / "data"))

    preprocess.python_func(dataset=dsl.Dataset(uri=str(dataset_dir)),
                           selection=dsl.Artifact(uri=str(tmp_path / "selection")), data=data,
                           run_name=run_name, tracking_uri=tracking_uri,
                           augment={"copies": 1, "rotate_degrees": 5}, seed=3)  # fmt: skip

    spec = training.load_spec(data.path)
    assert (spec.height, spec.width, spec.channels) == (12, 10, 1)
    assert (spec.scale, spec.offset, spec.labels) == (2 / 255, -1.0, CLASSES)
    report = PreprocessReport.read(data.path)
    assert report.seed == 3 and report.policy["copies"] == 1
    assert report.counts["train"] == 2 * report.n_train_original
    with np.load(files.split_file(data.path, "test")) as test:
        assert test["x"].shape[1:] == (12, 10, 1) and test["x"].dtype == np.uint8
    assert data.metadata == {"counts": report.counts, "input_shape": [12, 10, 1]}
    run = support.runs_of(tracking_uri, run_name)["preprocess"]
    assert run.info.status == "FINISHED"
    assert run.data.params["augment_copies"] == "1" and run.data.params["seed"] == "3"
    assert run.data.metrics["n_train"] == report.counts["train"]
    client = mlflow.MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {files.PREPROCESS_REPORT, files.PREPROCESSING_SPEC, files.AUGMENT_PREVIEW} <= logged
    spec_logged = client.download_artifacts(run.info.run_id, files.PREPROCESSING_SPEC)
    assert json.loads(Path(spec_logged).read_text())["labels"] == list(CLASSES)


def test_the_smoke_set_is_the_same_pixels_whether_preprocess_wrote_npz_or_shards(
    dataset_dir, spec, tmp_path
):
    from edgetune.components.deploy.release import smoke_samples
    from edgetune.components.preprocess.core import AugmentPolicy, preprocess

    still = AugmentPolicy(copies=0)
    preprocess(dataset_dir, tmp_path / "npz", spec=spec, policy=still)
    sharded = preprocess(
        dataset_dir, tmp_path / "tfr", spec=spec, policy=still, max_in_memory_bytes=0
    )

    assert sharded.storage == "tfrecord" and not files.split_file(tmp_path / "tfr", "test").exists()
    x_npz, y_npz = training.load_pixels(tmp_path / "npz", "test")
    x_tfr, y_tfr = training.load_pixels(tmp_path / "tfr", "test")
    assert x_npz.dtype == x_tfr.dtype == np.uint8 and len(x_npz) == 3
    assert np.array_equal(x_npz, x_tfr) and np.array_equal(y_npz, y_tfr)
    assert np.array_equal(smoke_samples(tmp_path / "tfr", 2), x_npz[:2])
