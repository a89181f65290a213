"""A pull channel on a real S3 API: moto's server on a loopback port, reached through s3fs."""

import json
import uuid

import pytest
import s3fs
from moto.server import ThreadedMotoServer

from edgetune import channel as ch
from edgetune.agent.pull import PullConfig, Puller
from edgetune.agent.service import Agent
from edgetune.fleet_status import summarise
from edgetune.signing import load_public_key


@pytest.fixture
def bucket(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached instance would reach another server
    # moto keeps its buckets in the process, across servers: a fresh bucket per test.
    name = f"channels-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    yield f"s3://{name}/prod"
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_publish_pull_and_status_over_s3(bucket, tmp_path, keys, make_bundle):
    doc = ch.publish(make_bundle("1.0.0", sequence=100), bucket, keys.private)
    agent = Agent(tmp_path / "state", load_public_key(keys.public))
    agent.restore()
    pull = Puller(agent, PullConfig(bucket, 1.0, "dev-s3"), 1 << 26)

    status = pull.poll_once()

    assert status["state"] == "installed", status["reason"]
    assert status["sha256"] == doc["sha256"]
    assert agent.health()["model_sha256"] == doc["model_sha256"]
    stored = json.loads(s3fs.S3FileSystem().cat_file(f"{bucket}/status/dev-s3.json"))
    assert stored["sha256"] == doc["sha256"]
    assert pull.poll_once()["state"] == "current"
    summary = summarise(bucket, str(keys.public))
    assert (summary["serving"], summary["devices"], summary["failed"]) == (1, 1, {})


def test_tampered_channel_on_s3_is_refused(bucket, tmp_path, keys, make_bundle):
    ch.publish(make_bundle("1.0.0", sequence=100), bucket, keys.private)
    fs = s3fs.S3FileSystem()
    doc = json.loads(fs.cat_file(f"{bucket}/channel.json"))
    fs.pipe_file(f"{bucket}/channel.json", json.dumps({**doc, "version": "9.9.9"}).encode())
    agent = Agent(tmp_path / "state", load_public_key(keys.public))
    agent.restore()

    status = Puller(agent, PullConfig(bucket, 1.0, "dev-s3"), 1 << 26).poll_once()

    assert status["state"] == "refused" and "signature" in status["reason"]
    assert agent.health()["version"] is None
