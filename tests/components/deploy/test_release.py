"""deploy's decisions, without kfp: which samples ship, what the bundle carries, which alias moves."""

from __future__ import annotations

import numpy as np
import pytest
from support import agents as support

from edgetune import bundle, files
from edgetune.components.deploy import core, release
from edgetune.components.evaluate.core import Evaluation
from edgetune.errors import EdgetuneError

INT8 = {"accuracy": 0.9, "size_bytes": 1234, "gzip_bytes": 999, "latency_ms_p50": 0.5,
        "per_class": {}, "confusion": []}  # fmt: skip


def evaluation(version: str = "7", blessed: bool = True) -> Evaluation:
    return Evaluation(
        stages={"float": {"accuracy": 0.95}, "tflite_int8": INT8},
        gate={"blessed": blessed, "reasons": ["pass: fine"], "policy": {}},
        n_test=10,
        registered_version=version,
    )


SHA = "ab" * 32  # the rolled-out model's sha256


def device(name: str, status: str) -> dict:
    # A device that took the model reports its sha256; the report counts by that, not by status.
    served = SHA if status in ("deployed", "unchanged") else None
    return {"name": name, "url": f"http://{name}", "status": status, "reason": f"why {name}",
            "seconds": 0.1, "bytes_sent": 0, "served_version": None, "served_sha256": served}  # fmt: skip


def report_of(*devices: dict) -> core.RolloutReport:
    return core.RolloutReport("v7", list(devices), model_sha256=SHA)


def test_the_champion_moves_only_when_every_device_serves_the_version():
    everywhere = report_of(device("a", "deployed"), device("b", "unchanged"))
    one_failed = report_of(device("a", "deployed"), device("b", "failed"))
    rolled_back = report_of(device("a", "rolled_back"))
    no_fleet = report_of()
    says_deployed_serves_other = report_of({**device("a", "deployed"), "served_sha256": "cd" * 32})

    assert everywhere.aliases("7") == {"champion": "7"}
    assert says_deployed_serves_other.aliases("7") == {}
    assert one_failed.aliases("7") == {} and rolled_back.aliases("7") == {}
    assert no_fleet.aliases("7") == {}  # nothing serves it: no proof it works on a device


def test_an_incomplete_rollout_raises_naming_every_device_that_did_not_take_it():
    report = report_of(device("a", "deployed"), device("b", "failed"), device("c", "rolled_back"))

    with pytest.raises(EdgetuneError) as caught:
        report.check()

    assert str(caught.value) == (
        "rollout of v7 reached 1/3 devices; b: failed (why b); c: rolled_back (why c)"
    )
    report_of(device("a", "unchanged")).check()  # all serve it: no error
    report_of().check()


def test_the_deploy_report_round_trips_and_fills_the_summary_deploy_section(tmp_path):
    report = report_of(device("a", "deployed"), device("b", "failed"))

    report.write(tmp_path)

    assert core.RolloutReport.read(tmp_path) == report
    assert report.summary_part() == {"deploy": report.to_dict()}
    assert report.metrics() == {"succeeded": 1, "failed": 1, "rolled_back": 0, "skipped": 0}
    assert report.metadata() == {"mode": "push", "version": "v7", "devices": 2}


def test_smoke_samples_are_the_first_n_raw_images_of_the_test_split(data_dir):
    with np.load(files.split_file(data_dir, "test")) as test:
        first = test["x"][:4]

    samples = release.smoke_samples(data_dir, 4)

    assert samples.dtype == np.uint8 and np.array_equal(samples, first)
    assert len(release.smoke_samples(data_dir, 50)) == 10  # never more than the split holds


def test_the_bundle_carries_the_registered_version_the_int8_metrics_and_the_smoke_set(
    tmp_path, data_dir, model_file, keys
):
    model_dir = files.artifact_dir(tmp_path / "int8")
    (model_dir / files.TFLITE_MODEL).write_bytes(model_file.read_bytes())

    path = release.make_bundle(tmp_path / "out", model_dir, data_dir, evaluation("7"), "fp-1",
                            signing_key=str(keys.private), smoke_count=4, mlflow_run_id="r1")  # fmt: skip

    assert path.name == "bundle-v7.tar"
    shipped = bundle.open_bundle(path, keys.public)  # signed with the key given
    manifest = shipped.manifest
    assert (manifest.version, manifest.data_fingerprint, manifest.mlflow_run_id) == (
        "v7",
        "fp-1",
        "r1",
    )
    assert dict(manifest.metrics) == {k: INT8[k] for k in ("accuracy", "size_bytes",
                                      "gzip_bytes", "latency_ms_p50")}  # fmt: skip
    pixels, expected = shipped.samples()
    first = release.smoke_samples(data_dir, 4)
    assert np.array_equal(pixels, first)
    assert np.array_equal(expected, support.litert_classes(model_file.read_bytes(), first))


def test_the_firmware_c_sources_beside_the_model_ship_in_the_bundle(
    tmp_path, data_dir, model_file, keys
):
    from edgetune import firmware

    model_dir = files.artifact_dir(tmp_path / "int8")
    (model_dir / files.TFLITE_MODEL).write_bytes(model_file.read_bytes())
    firmware.export(model_dir / files.TFLITE_MODEL, support.SPEC, model_dir)

    path = release.make_bundle(tmp_path / "out", model_dir, data_dir, evaluation("7"), "fp-1",
                            signing_key=str(keys.private), smoke_count=4, mlflow_run_id="r1")  # fmt: skip

    shipped = bundle.open_bundle(path, keys.public)
    assert shipped.files[firmware.SOURCE_FILE] == (model_dir / firmware.SOURCE_FILE).read_bytes()
    assert set(shipped.manifest.files) == {
        "model.tflite",
        "samples.npz",
        "model_data.h",
        "model_data.cc",
    }


def test_a_bundle_without_a_signing_key_is_refused_before_anything_is_written(tmp_path, data_dir):
    with pytest.raises(EdgetuneError, match="deploy needs signing_key"):
        release.make_bundle(tmp_path / "out", tmp_path, data_dir, evaluation(), "fp",
                         signing_key="", smoke_count=4, mlflow_run_id=None)  # fmt: skip

    assert not (tmp_path / "out").exists()
