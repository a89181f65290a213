"""A federated round over real agents: updates in (never samples), a gated average shipped."""

import httpx
import numpy as np
import pytest
import yaml
from support import agents as support
from support import models

from edgetune import files
from edgetune.components.federate.core import FederateConfig
from edgetune.components.federate.rounds import run_rounds

LABELS = support.SPEC.labels


@pytest.fixture
def fleet(start_agent, make_bundle, tmp_path, monkeypatch):
    """Three agents on the split bundle: two with samples, one with none; a fleet file."""
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)
    bundle = make_bundle("1.0.0", split=support.tiny_split_model())
    agents = [start_agent(f"a{i}") for i in range(3)]
    for i, agent in enumerate(agents):
        assert (
            httpx.put(
                f"{agent.url}/bundle", content=bundle.read_bytes(), headers=support.auth()
            ).status_code
            == 200
        )
        if i < 2:
            x, y = support.pattern_images(24, seed=10 + i)
            support.post_samples(agent.url, x, [LABELS[c] for c in y])
    devices = [
        {"name": f"a{i}", "url": a.url, "token_ref": "env:AGENT_TOKEN"}
        for i, a in enumerate(agents)
    ]
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({"devices": devices}))
    x, y = support.pattern_images(30, seed=99)  # the pipeline's test split
    data = tmp_path / "data"
    data.mkdir()
    np.savez(files.split_file(data, "test"), x=x, y=y)
    files.write_json(data / files.PREPROCESSING_SPEC, support.SPEC.to_dict())
    return bundle, data, fleet_file, agents


def test_a_round_averages_the_updates_gates_and_ships_a_split_bundle(
    fleet, keys, tmp_path, tracking_uri, run_name
):
    bundle, data, fleet_file, agents = fleet
    config = FederateConfig(min_devices=2, timeout_s=60)

    (result,) = run_rounds(bundle, data, fleet_file, keys.public, str(keys.private), tmp_path / "out",
                           config, run_name=run_name, tracking_uri=tracking_uri)  # fmt: skip

    report = result["round"]
    assert [u["name"] for u in report["updates"]] == ["a0", "a1"]
    assert [u["n_samples"] for u in report["updates"]] == [15, 15]  # 24 - 6 held out - 3 val
    (skipped,) = report["skipped"]
    assert skipped["name"] == "a2" and "no head trained" in skipped["reason"]
    assert report["accuracy_after"] > report["accuracy_before"] and report["gate"]["blessed"]
    assert result["rollout"]["succeeded"] == 3, result["rollout"]["devices"]
    for agent in agents:  # every device serves the averaged head now, its personal one reset
        health = httpx.get(f"{agent.url}/health").json()
        assert (health["version"], health["status"]) == ("1.0.0-fed1", "ok")
        assert health["personalization"]["head_version"] == 0
    runs = models.runs_of(tracking_uri, run_name)
    assert runs["pipeline"].info.status == "FINISHED"  # the parent of the rounds is closed
    run = runs["federate-round-1"]
    assert run.data.metrics["devices_answered"] == 2 and run.data.metrics["devices_skipped"] == 1
    assert run.data.metrics["accuracy_after"] == report["accuracy_after"]

    # the next round: too few devices answer (min 3), so it stops and ships nothing
    (stopped,) = run_rounds(tmp_path / "out" / "round-1" / "bundle-1.0.0-fed1.tar", data, fleet_file,
                            keys.public, str(keys.private), tmp_path / "out",
                            FederateConfig(min_devices=3, timeout_s=60))  # fmt: skip
    assert "min_devices=3" in stopped["round"]["stopped"] and "bundle" not in stopped
