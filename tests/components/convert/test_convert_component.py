"""The convert KFP wrapper's python_func: both .tflite files, their report, sizes in MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from kfp import dsl
from support import models as support

from edgetune import files, firmware
from edgetune.components.convert.component import convert


@pytest.mark.slow
def test_writes_both_files_and_logs_their_sizes(micro, tiny_data, tracking_uri, run_name, tmp_path):
    tflite_float = dsl.Model(uri=str(tmp_path / "tflite_float"))
    tflite_int8 = dsl.Model(uri=str(tmp_path / "tflite_int8"))
    branches = [  # choose's verdict names the branch whose file convert takes
        support.branch_folder(micro.int8_dir, tmp_path / "student", "digitnet@0.25"),
        support.branch_folder(micro.int8_dir, tmp_path / "teacher"),
    ]
    (tmp_path / "student" / files.TFLITE_MODEL).write_bytes(b"not this one")

    convert.python_func(
        data=dsl.Dataset(uri=str(tiny_data)),
        float_model=dsl.Model(uri=str(micro.float_dir)),
        candidates=[dsl.Model(uri=str(b)) for b in branches],
        search={"shipped": "teacher-s50-ptq_int8", "chosen": "", "passed": True, "check": ""},
        tflite_float=tflite_float,
        tflite_int8=tflite_int8,
        run_name=run_name,
        tracking_uri=tracking_uri,
        representative_samples=16,
    )

    float_file = Path(tflite_float.path) / files.TFLITE_MODEL
    int8_file = Path(tflite_int8.path) / files.TFLITE_MODEL
    assert int8_file.read_bytes() == (micro.int8_dir / files.TFLITE_MODEL).read_bytes()  # as chosen
    report = files.read_json(Path(tflite_int8.path) / files.CONVERT_REPORT)
    assert report["tflite_int8"]["input_dtype"] == report["tflite_int8"]["output_dtype"] == "int8"
    assert tflite_int8.metadata == {
        "size_bytes": int8_file.stat().st_size,
        "gzip_bytes": files.gzip_size(int8_file.read_bytes()),
    }
    assert tflite_float.metadata["size_bytes"] == float_file.stat().st_size
    run = support.runs_of(tracking_uri, run_name)["convert"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["tflite_int8_size_bytes"] == int8_file.stat().st_size
    assert run.data.params["representative_samples"] == "16"
    logged = mlflow.MlflowClient(tracking_uri).download_artifacts(
        run.info.run_id, "tflite_int8/model.tflite", str(tmp_path / "download")
    )
    assert Path(logged).read_bytes() == int8_file.read_bytes()
    # the int8 file also as C source for firmware, beside it and in MLflow
    header = Path(tflite_int8.path) / firmware.HEADER_FILE
    assert f"EDGETUNE_MODEL_DATA_LEN {int8_file.stat().st_size}u" in header.read_text()
    assert (Path(tflite_int8.path) / firmware.SOURCE_FILE).is_file()
    names = {
        a.path
        for a in mlflow.MlflowClient(tracking_uri).list_artifacts(run.info.run_id, "firmware")
    }
    assert names == {"firmware/model_data.h", "firmware/model_data.cc"}
