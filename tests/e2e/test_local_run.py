"""One run of the whole DAG through kfp.local with tiny settings, deployed to three real agents."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from edgetune.components.common import summary, tracking
from edgetune.demo_data import write_demo_digits
from edgetune.pipelines.local_run import run_local

pytestmark = pytest.mark.e2e
CHANCE = 0.1  # ten digit classes


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("e2e")
    write_demo_digits(root / "digits")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    args = argparse.Namespace(
        preset="tiny",
        overrides=[f"data_uri={root / 'digits'}", f"tracking_uri={tracking_uri}"],
        out=str(root / "runs"),
        agents=3,
        keep_agents=True,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the signing keys land in <cwd>/.edgetune
        run = run_local(args)
    try:
        yield run
    finally:
        if run.fleet is not None:
            run.fleet.stop()


def test_summary_holds_real_metrics_above_chance(local_run) -> None:
    s = local_run.summary
    assert s["status"] == "SUCCEEDED", s.get("errors")
    assert (local_run.out / "summary.json").is_file()
    assert s["dataset"]["n_train"] + s["dataset"]["n_val"] + s["dataset"]["n_test"] == 1797
    assert s["model"]["zoo_id"] == "edgetune-digitnet-32"
    # the tiny preset searches two candidates: 50% sparse, post-training int8 or QAT int8
    assert [c["name"] for c in s["candidates"]] == ["teacher-s50-ptq_int8", "teacher-s50-qat_int8"]
    assert s["chosen"] in {c["name"] for c in s["candidates"]}
    assert all(c["tflm_supported"] and c["flash_bytes"] > 0 for c in s["candidates"])
    assert (local_run.out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    shipped = [
        stage for stage in summary.STAGES if stage != "qat" or s["chosen"].endswith("qat_int8")
    ]
    for stage in shipped:
        assert s["stages"][stage]["accuracy"] > 2 * CHANCE, stage
    assert s["stages"]["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    int8, flt = s["stages"]["tflite_int8"], s["stages"]["tflite_float"]
    assert int8["size_bytes"] < 0.5 * flt["size_bytes"]
    assert int8["latency_ms_p50"] > 0
    steps = {n for n in s["component_seconds"] if not n.startswith("candidate:")}
    assert steps == set(summary.COMPONENTS)
    assert len(s["component_seconds"]) == len(steps) + 2  # a nested run per candidate
    assert s["gate"]["blessed"] is True


def test_three_agents_serve_the_deployed_version_and_predict(local_run) -> None:
    deployed = local_run.summary["deploy"]
    assert (deployed["succeeded"], deployed["failed"], deployed["rolled_back"]) == (3, 0, 0)
    digit = Image.open(sorted((Path(local_run.params["data_uri"]) / "7").glob("*.png"))[0])
    png = io.BytesIO()
    digit.save(png, format="PNG")
    for url in local_run.fleet.urls:
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert (health["status"], health["version"]) == ("ok", deployed["version"])
        answer = httpx.post(
            f"{url}/predict",
            content=png.getvalue(),
            headers={"Content-Type": "image/png"},
            timeout=10,
        ).json()
        assert answer["version"] == deployed["version"]
        assert answer["label"] in [str(d) for d in range(10)]
        assert np.isclose(sum(answer["scores"]), 1.0, atol=0.05)


def test_mlflow_holds_parent_run_with_a_nested_run_per_step_and_candidate_and_the_champion(
    local_run,
) -> None:
    import mlflow

    experiment_id = tracking.use_experiment(local_run.params["tracking_uri"], "edgetune")
    parent = tracking.find_parent_run(experiment_id, local_run.params["run_name"])
    assert parent.info.status == "FINISHED"
    children = summary.child_runs(experiment_id, parent.info.run_id)
    names = [r.info.run_name for r in children]
    assert sorted(n for n in names if not n.startswith("candidate:")) == sorted(summary.COMPONENTS)
    assert sorted(n for n in names if n.startswith("candidate:")) == [
        f"candidate:{c['name']}" for c in local_run.summary["candidates"]
    ]
    assert all(r.info.status == "FINISHED" for r in children)
    client = mlflow.MlflowClient()
    assert "summary.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    champion = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, "champion")
    assert f"v{champion.version}" == local_run.summary["deploy"]["version"]
    candidate = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, "candidate")
    assert candidate.version == champion.version
