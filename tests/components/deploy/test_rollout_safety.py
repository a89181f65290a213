"""rollout() tells the truth: sha256 decides, no downgrade, compare-and-swap, waves that stop."""

from __future__ import annotations

import hashlib
import threading

import httpx
import pytest
from support import agents as support

from edgetune.components.deploy.core import plan_waves, rollout
from edgetune.errors import EdgetuneError
from edgetune.fleet import FleetDevice


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)


def device(name, agent, **extra):
    return FleetDevice(name=name, url=agent.url, token_ref="env:AGENT_TOKEN", **extra)


def health(agent):
    return httpx.get(f"{agent.url}/health", timeout=10).json()


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unchanged_is_decided_by_sha256_not_by_the_version_name(
    start_agent, make_bundle, model_file, other_model_file, keys
):
    agent = start_agent()
    rollout(make_bundle("v1", sequence=1), [device("dev", agent)])

    # Version "v1" from another MLflow store: another model under the same name.
    (same_name,) = rollout(make_bundle("v1", model=other_model_file, sequence=2),
                           [device("dev", agent)]).devices  # fmt: skip
    # Another name for the model the device already serves.
    report = rollout(make_bundle("v9", sequence=3), [device("dev", agent)])

    assert same_name["status"] == "failed" and "other contents" in same_name["reason"]
    assert health(agent)["model_sha256"] == sha(model_file)
    (renamed,) = report.devices
    assert renamed["status"] == "unchanged" and renamed["bytes_sent"] == 0
    assert report.succeeded == 1 and renamed["served_sha256"] == sha(model_file)


def test_another_model_deploys_and_succeeded_counts_served_sha256(
    start_agent, make_bundle, other_model_file
):
    agents = [start_agent(f"a{i}") for i in range(2)]
    fleet = [device(f"dev-{i}", a) for i, a in enumerate(agents)]
    rollout(make_bundle("v1", sequence=1), fleet)

    report = rollout(make_bundle("v2", model=other_model_file, sequence=2), fleet)

    assert [d["status"] for d in report.devices] == ["deployed"] * 2
    assert report.succeeded == 2 and report.model_sha256 == sha(other_model_file)
    assert all(health(a)["model_sha256"] == sha(other_model_file) for a in agents)


def test_an_older_bundle_is_never_pushed_onto_a_newer_device(start_agent, make_bundle,
                                                              other_model_file):  # fmt: skip
    agent = start_agent()
    rollout(make_bundle("v31", model=other_model_file, sequence=31), [device("dev", agent)])

    report = rollout(make_bundle("v30", sequence=30), [device("dev", agent)])

    (result,) = report.devices
    assert result["status"] == "failed" and "older bundle is never pushed" in result["reason"]
    assert result["bytes_sent"] == 0 and report.succeeded == 0
    assert health(agent)["version"] == "v31"


def test_concurrent_rollouts_never_report_a_model_the_device_does_not_serve(
    start_agent, make_bundle, model_file, other_model_file
):
    agents = [start_agent(f"a{i}") for i in range(3)]
    fleet = [device(f"dev-{i}", a) for i, a in enumerate(agents)]
    for round_ in range(5):
        older = make_bundle(f"r{round_}-a", sequence=10 * round_ + 1)
        newer = make_bundle(f"r{round_}-b", model=other_model_file, sequence=10 * round_ + 2)
        reports = {}

        def run(name, path, reports=reports):
            reports[name] = rollout(path, fleet, timeout_s=30)

        threads = [threading.Thread(target=run, args=a) for a in (("a", older), ("b", newer))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

        # The newer bundle wins on every device, and says so; the older never overwrites it.
        assert [d["status"] for d in reports["b"].devices] != ["failed"] * 3
        for i, agent in enumerate(agents):
            assert reports["b"].devices[i]["status"] in ("deployed", "unchanged")
            assert health(agent)["model_sha256"] == sha(other_model_file)
        for report in reports.values():
            for result in report.devices:  # a success names the model it saw served
                if result["status"] in ("deployed", "unchanged"):
                    assert result["served_sha256"] == report.model_sha256
        # Next round starts from the older model again, with a fresh sequence.
        rollout(make_bundle(f"r{round_}-reset", sequence=10 * round_ + 5), fleet)


def test_degraded_device_goes_back_by_a_signed_order_naming_its_previous_version(
    start_agent, make_bundle, keys, other_model_file
):
    agent = start_agent()
    rollout(make_bundle("1.0.0", sequence=1), [device("dev", agent)])

    broken = make_bundle("2.0.0", disagree=True, model=other_model_file, sequence=2)
    unsigned = rollout(broken, [device("dev", agent)])
    assert "no signing key" in unsigned.devices[0]["reason"]
    report = rollout(make_bundle("3.0.0", disagree=True, sequence=3), [device("dev", agent)],
                     signing_key=keys.private)  # fmt: skip

    (result,) = report.devices
    assert result["status"] == "rolled_back" and result["reason"] == "smoke agreement 0.00 < 1.00"
    # What it served before the push: 2.0.0, left degraded by the unsigned rollout.
    assert (result["served_version"], result["before_version"]) == ("2.0.0", "2.0.0")
    assert health(agent)["version"] == "2.0.0"


def test_a_failing_first_wave_stops_the_rollout_and_later_waves_are_untouched(
    start_agent, make_bundle, keys, other_model_file
):
    agents = [start_agent(f"a{i}") for i in range(4)]
    fleet = [device(f"dev-{i}", a) for i, a in enumerate(agents)]
    rollout(make_bundle("1.0.0", sequence=1), fleet)

    broken = make_bundle("2.0.0", disagree=True, model=other_model_file, sequence=2)
    report = rollout(broken, fleet, waves="1,50%,100%",
                     max_failure_fraction=0.0, signing_key=keys.private)  # fmt: skip

    statuses = [d["status"] for d in report.devices]
    assert statuses == ["rolled_back", "skipped", "skipped", "skipped"]
    assert report.stopped.startswith("wave 1: 1 of 1 devices failed")
    assert [d["bytes_sent"] for d in report.devices[1:]] == [0, 0, 0]
    assert [w["devices"] for w in report.waves] == [["dev-0"]]
    assert all(health(a)["version"] == "1.0.0" for a in agents)


def test_a_stopped_wave_rolls_back_its_deployed_devices(start_agent, make_bundle, keys, tmp_path,
                                                       other_model_file):  # fmt: skip
    agents = [start_agent(f"a{i}") for i in range(3)]
    (tmp_path / "bad").write_text("wrong-token-0123456789")
    fleet = [device("good", agents[0]), device("refuses", agents[1]), device("later", agents[2])]
    fleet[1] = FleetDevice(name="refuses", url=agents[1].url, token_ref=f"file:{tmp_path / 'bad'}")
    rollout(make_bundle("1.0.0", sequence=1), [fleet[0], fleet[2]])

    report = rollout(make_bundle("2.0.0", model=other_model_file, sequence=2), fleet,
                     waves="2,100%", max_failure_fraction=0.25, signing_key=keys.private)  # fmt: skip

    good, refuses, later = report.devices
    assert (good["status"], refuses["status"], later["status"]) == (
        "rolled_back", "failed", "skipped")  # fmt: skip
    assert "wave 1: 1 of 2 devices failed" in good["reason"]
    assert health(agents[0])["version"] == "1.0.0" and health(agents[2])["version"] == "1.0.0"


def test_waves_in_order_when_all_is_well(start_agent, make_bundle):
    agents = [start_agent(f"a{i}") for i in range(4)]
    fleet = [device(f"dev-{i}", a) for i, a in enumerate(agents)]
    seen = []

    report = rollout(make_bundle("1.0.0"), fleet, waves="1,50%,100%", progress=seen.append,
                     max_failure_fraction=0.0, soak_s=0.1)  # fmt: skip

    assert [d["status"] for d in report.devices] == ["deployed"] * 4
    assert [w["devices"] for w in report.waves] == [["dev-0"], ["dev-1"], ["dev-2", "dev-3"]]
    assert [d["wave"] for d in seen][0] == 1 and sorted(d["wave"] for d in seen) == [1, 2, 3, 3]
    assert report.stopped is None and report.succeeded == 4


@pytest.mark.parametrize(
    ("n", "waves", "plan"),
    [
        (10, "1,10%,50%,100%", [(0, 1), (1, 5), (5, 10)]),
        (200, "1,10%,50%,100%", [(0, 1), (1, 20), (20, 100), (100, 200)]),
        (3, "100%", [(0, 3)]),
        (3, "5", [(0, 3)]),
        (4, "1", [(0, 1), (1, 4)]),
        (0, "1,100%", []),
    ],
)
def test_plan_waves(n, waves, plan):
    assert plan_waves(n, waves) == plan


@pytest.mark.parametrize("waves", ["0", "1,abc", "150%", "-1"])
def test_bad_waves_are_one_line_errors(waves):
    with pytest.raises(EdgetuneError, match="rollout_waves=.*is not a count >= 1 or a percentage"):
        plan_waves(10, waves)


def test_tls_device_is_verified_against_the_fleets_ca_file(tmp_path, keys, make_bundle):
    cert, key = support.self_signed_cert(tmp_path)
    agent = support.ThreadedAgent(tmp_path / "state", keys.public, tls_cert=cert, tls_key=key)
    try:
        trusted = device("tls", agent, ca_file=str(cert))
        untrusted = device("tls", agent)

        (refused,) = rollout(make_bundle("1.0.0"), [untrusted], timeout_s=5).devices
        (result,) = rollout(make_bundle("1.0.0"), [trusted]).devices

        assert refused["status"] == "failed" and "unreachable" in refused["reason"]
        assert result["status"] == "deployed"
    finally:
        agent.stop()


def test_rollout_to_fleet_picks_devices_by_tags_in_file_order(start_agent, make_bundle, tmp_path):
    from edgetune.components.deploy.core import rollout_to_fleet

    agents = [start_agent(f"a{i}") for i in range(3)]
    tags = [["store-1", "cam"], ["store-2", "cam"], ["store-1"]]
    lines = [f"  - {{name: d{i}, url: '{a.url}', token_ref: 'env:AGENT_TOKEN', tags: {t}}}"
             for i, (a, t) in enumerate(zip(agents, tags, strict=True))]  # fmt: skip
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text("devices:\n" + "\n".join(lines) + "\n")

    report = rollout_to_fleet(make_bundle("1.0.0"), str(fleet_file), tags="store-1, cam")

    assert [d["name"] for d in report.devices] == ["d0"]
    assert [health(a)["status"] for a in agents] == ["ok", "empty", "empty"]
