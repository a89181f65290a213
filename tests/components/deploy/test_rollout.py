"""rollout() against real agents on loopback ports."""

import tarfile

import httpx
from support import agents as support

from edgetune import bundle
from edgetune.components.deploy.core import rollout
from edgetune.fleet import FleetDevice


def device(name, agent_or_url, token_ref="env:AGENT_TOKEN"):
    url = agent_or_url if isinstance(agent_or_url, str) else agent_or_url.url
    return FleetDevice(name=name, url=url, token_ref=token_ref)


def served(agent):
    return httpx.get(f"{agent.url}/health").json()["version"]


def test_rollout_deploys_then_sends_nothing_the_second_time(start_agent, make_bundle, monkeypatch):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)
    agents = [start_agent(f"a{i}") for i in range(3)]
    fleet = [device(f"dev-{i}", a) for i, a in enumerate(agents)]
    path = make_bundle("1.0.0")
    seen = []

    first = rollout(path, fleet, progress=seen.append)

    assert [d["status"] for d in first.devices] == ["deployed"] * 3
    assert [d["bytes_sent"] for d in first.devices] == [path.stat().st_size] * 3
    assert [d["served_version"] for d in first.devices] == ["1.0.0"] * 3
    assert (first.succeeded, first.failed, first.rolled_back) == (3, 0, 0)
    assert sorted(d["name"] for d in seen) == ["dev-0", "dev-1", "dev-2"]
    assert all(served(a) == "1.0.0" for a in agents)

    second = rollout(path, fleet)

    assert [(d["status"], d["bytes_sent"]) for d in second.devices] == [("unchanged", 0)] * 3
    assert second.succeeded == 3


def test_degraded_device_is_rolled_back_to_the_previous_version(
    start_agent, make_bundle, monkeypatch, keys, other_model_file
):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)
    agent = start_agent()
    rollout(make_bundle("1.0.0"), [device("dev", agent)])

    report = rollout(
        make_bundle("2.0.0", disagree=True, model=other_model_file),
        [device("dev", agent)],
        signing_key=keys.private,
    )

    (result,) = report.devices
    assert result["status"] == "rolled_back"
    assert result["reason"] == "smoke agreement 0.00 < 1.00"
    assert result["served_version"] == "1.0.0" and served(agent) == "1.0.0"
    assert (report.succeeded, report.rolled_back) == (0, 1)


def test_degraded_first_install_cannot_roll_back_and_fails(start_agent, make_bundle, monkeypatch):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)

    (result,) = rollout(make_bundle("1.0.0", disagree=True), [device("dev", start_agent())]).devices

    assert result["status"] == "failed"
    assert result["reason"] == (
        "smoke agreement 0.00 < 1.00; cannot roll back: nothing was served before"
    )


def test_every_device_gets_a_status_whatever_the_others_do(
    start_agent, make_bundle, monkeypatch, tmp_path
):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    good, wrong_token, no_token = start_agent("good"), start_agent("wrong"), start_agent("none")
    dead_url = f"http://127.0.0.1:{support.free_port()}"
    (tmp_path / "bad-token").write_text("not-the-token")
    fleet = [
        device("dead", dead_url),
        device("wrong", wrong_token, f"file:{tmp_path / 'bad-token'}"),
        device("none", no_token, "env:UNSET_TOKEN"),
        device("good", good),
    ]

    report = rollout(make_bundle(), fleet, timeout_s=5)

    by_name = {d["name"]: d for d in report.devices}
    assert by_name["dead"]["status"] == "failed"
    assert by_name["dead"]["reason"].startswith(f"unreachable: {dead_url} (")
    assert by_name["wrong"]["reason"] == "token refused by wrong"
    assert by_name["none"]["reason"] == "device none: environment variable UNSET_TOKEN is not set"
    assert by_name["good"]["status"] == "deployed"
    assert [d["name"] for d in report.devices] == ["dead", "wrong", "none", "good"]
    assert (report.succeeded, report.failed) == (1, 3)
    assert served(wrong_token) is None and served(no_token) is None


def test_refused_bundle_fails_with_the_agents_reason(
    start_agent, make_bundle, monkeypatch, tmp_path
):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)
    agent = start_agent()
    with tarfile.open(make_bundle("1.0.0")) as tar:
        parts = {m.name: tar.extractfile(m).read() for m in tar}
    model = bytearray(parts["model.tflite"])
    model[100] ^= 1
    parts["model.tflite"] = bytes(model)
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bundle.pack_tar(parts))

    (result,) = rollout(tampered, [device("dev", agent)]).devices

    assert result["status"] == "failed"
    assert "400 model.tflite" in result["reason"] and "sha256" in result["reason"]
    assert served(agent) is None


def test_report_dict_has_the_summary_keys(start_agent, make_bundle, monkeypatch):
    monkeypatch.setenv("AGENT_TOKEN", support.TOKEN)

    report = rollout(make_bundle("4.2"), [device("dev", start_agent())]).to_dict()

    assert set(report) == {"mode", "version", "model_sha256", "sequence", "devices", "succeeded",
                           "failed", "rolled_back", "skipped", "waves", "stopped", "channel"}  # fmt: skip
    assert (report["mode"], report["version"], report["channel"]) == ("push", "4.2", None)
    assert set(report["devices"][0]) == {
        "name", "url", "wave", "status", "reason", "seconds", "bytes_sent", "served_version",
        "served_sha256", "served_sequence", "before_version", "before_sha256",
    }  # fmt: skip
