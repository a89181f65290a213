"""Pull channels: publish, real agents polling a local-folder channel, refusals, fleet status."""

import json
import time

import httpx
import pytest
from support import agents as support

from edgetune import channel as ch
from edgetune import cli
from edgetune.agent.pull import PullConfig, Puller
from edgetune.agent.service import Agent
from edgetune.fleet_status import summarise
from edgetune.signing import load_public_key


def publish(make_bundle, keys, uri, version="1.0.0", **kwargs):
    path = make_bundle(
        version, sequence=kwargs.pop("sequence", None), model=kwargs.pop("model", None)
    )
    return ch.publish(path, str(uri), keys.private, **kwargs)


def puller(tmp_path, keys, uri, device="dev-a", name="state"):
    agent = Agent(tmp_path / name, load_public_key(keys.public))
    agent.restore()
    return Puller(agent, PullConfig(str(uri), 1.0, device), 1 << 26)


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_agents_converge_to_the_published_bundle(tmp_path, keys, make_bundle, start_agent,
                                                 other_model_file):  # fmt: skip
    uri = tmp_path / "channel"
    bundle = make_bundle("1.0.0", sequence=100)
    assert cli.main(["publish", str(bundle), "--channel", str(uri),
                     "--signing-key", str(keys.private)]) == 0  # fmt: skip
    doc = json.loads((uri / "channel.json").read_text())
    agents = [start_agent(f"a{i}", pull=PullConfig(str(uri), 0.2, f"dev-{i}")) for i in range(3)]

    def served(sha):
        return (
            all(
                json.loads(p.read_text()).get("sha256") == sha
                for p in (uri / "status").glob("*.json")
            )
            and len(list((uri / "status").glob("*.json"))) == 3
        )

    assert wait_for(lambda: served(doc["sha256"]))
    for agent in agents:
        assert httpx.get(f"{agent.url}/health").json()["model_sha256"] == doc["model_sha256"]
    summary = summarise(str(uri), str(keys.public))
    assert (summary["serving"], summary["devices"], summary["failed"]) == (3, 3, {})

    # A new release: the same agents move to it, through the same install path as a push.
    new = publish(make_bundle, keys, uri, "2.0.0", sequence=200, model=other_model_file)
    assert new["sha256"] != doc["sha256"]
    assert wait_for(lambda: served(new["sha256"]))
    assert {httpx.get(f"{a.url}/health").json()["version"] for a in agents} == {"2.0.0"}


def test_tampered_channel_is_refused(tmp_path, keys, make_bundle, capsys):
    uri = tmp_path / "channel"
    publish(make_bundle, keys, uri)
    doc = json.loads((uri / "channel.json").read_text())
    doc["waves"] = [{"percent": 100, "opens_s": 0}, {"percent": 100, "opens_s": 1}]
    (uri / "channel.json").write_text(json.dumps(doc))

    status = puller(tmp_path, keys, uri).poll_once()

    assert status["state"] == "refused" and "signature does not verify" in status["reason"]
    assert status["version"] is None and status["sha256"] is None
    assert json.loads((uri / "status" / "dev-a.json").read_text())["state"] == "refused"
    assert cli.main(["fleet", "status", str(uri)]) == 1
    out = capsys.readouterr().out
    assert "0/1 devices serve it" in out and "FAILED dev-a" in out


def test_channel_signed_by_another_key_is_refused(tmp_path, keys, make_bundle):
    uri = tmp_path / "channel"
    publish(make_bundle, keys, uri)
    key = ch.load_private_key(keys.other_private)
    (uri / "channel.json.sig").write_bytes(key.sign((uri / "channel.json").read_bytes()))

    status = puller(tmp_path, keys, uri).poll_once()

    assert status["state"] == "refused" and "signature" in status["reason"]


def test_expired_channel_is_refused(tmp_path, keys, make_bundle):
    uri = tmp_path / "channel"
    publish(make_bundle, keys, uri, now=time.time() - 120, expires_s=60)

    status = puller(tmp_path, keys, uri).poll_once()

    assert status["state"] == "refused" and "expired" in status["reason"]
    assert status["version"] is None


def test_bundle_not_matching_the_signed_sha256_is_refused(tmp_path, keys, make_bundle):
    uri = tmp_path / "channel"
    doc = publish(make_bundle, keys, uri, "1.0.0", sequence=100)
    # Another validly signed bundle put in its place: the channel's sha256 still decides.
    (uri / doc["bundle"]).write_bytes(make_bundle("1.0.1", sequence=101).read_bytes())

    status = puller(tmp_path, keys, uri).poll_once()

    assert status["state"] == "refused" and "sha256" in status["reason"]
    assert status["version"] is None


def test_older_sequence_on_the_channel_is_not_installed(tmp_path, keys, make_bundle):
    uri = tmp_path / "channel"
    pull = puller(tmp_path, keys, uri)
    publish(make_bundle, keys, uri, "2.0.0", sequence=200)
    assert pull.poll_once()["state"] == "installed"
    publish(make_bundle, keys, uri, "1.0.0", sequence=100)  # a replayed older release

    status = pull.poll_once()

    assert status["state"] == "refused" and "not above" in status["reason"]
    assert status["version"] == "2.0.0"


def test_device_outside_the_open_wave_waits(tmp_path, keys, make_bundle):
    inside = next(f"d{i}" for i in range(1000) if ch.device_bucket(f"d{i}") < 10)
    outside = next(f"d{i}" for i in range(1000) if ch.device_bucket(f"d{i}") >= 10)
    uri = tmp_path / "channel"
    publish(make_bundle, keys, uri, waves=ch.parse_waves("10,100@3600"))

    assert puller(tmp_path, keys, uri, outside, "s1").poll_once()["state"] == "waiting"
    assert puller(tmp_path, keys, uri, inside, "s2").poll_once()["state"] == "installed"
    assert puller(tmp_path, keys, uri, inside, "s2").poll_once()["state"] == "current"


def test_parse_waves():
    assert ch.parse_waves("10,50@600,100@1800") == (
        ch.Wave(10), ch.Wave(50, 600), ch.Wave(100, 1800)
    )  # fmt: skip
    for bad in ("0", "101", "50,10@5", "10,50", "ten"):
        with pytest.raises(ch.EdgetuneError):
            ch.parse_waves(bad)


def test_publish_refuses_a_bundle_signed_by_another_key(tmp_path, keys, make_bundle):
    path = make_bundle("1.0.0", key=keys.other_private)
    with pytest.raises(ch.EdgetuneError):
        ch.publish(path, str(tmp_path / "c"), keys.private)
    assert not (tmp_path / "c" / "channel.json").exists()


def test_pull_needs_a_device_id(tmp_path, keys, capsys):
    argv = ["agent", "serve", "--port", "0", "--state-dir", str(tmp_path / "s"),
            "--trusted-key", str(keys.public), "--pull", str(tmp_path / "c")]  # fmt: skip
    assert cli.main(argv) == 2
    assert "--device-id" in capsys.readouterr().err


def test_cli_agent_follows_the_channel(tmp_path, keys, make_bundle):
    uri = tmp_path / "channel"
    doc = publish(make_bundle, keys, uri)
    token_file = tmp_path / "token"
    token_file.write_text(support.TOKEN)
    token_file.chmod(0o600)
    proc, url = support.start_cli_agent(tmp_path / "state", keys.public, token_file, "--pull",
                                        str(uri), "--interval", "0.2", "--device-id", "cli-1")  # fmt: skip
    try:
        assert wait_for(lambda: httpx.get(f"{url}/health").json()["model_sha256"]
                        == doc["model_sha256"])  # fmt: skip
        assert wait_for(lambda: (uri / "status" / "cli-1.json").is_file())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert json.loads((uri / "status" / "cli-1.json").read_text())["sha256"] == doc["sha256"]
