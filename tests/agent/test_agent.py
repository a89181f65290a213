"""The device agent over real HTTP: installs, refusals, smoke test, rollback, restarts."""

import hashlib
import subprocess
import sys
import tarfile

import httpx
import pytest
from support import agents as support

from edgetune import bundle, cli
from edgetune.agent.limits import AgentLimits

auth = support.auth


def put(agent, path_or_bytes, token=support.TOKEN):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return httpx.put(f"{agent.url}/bundle", content=data, headers=auth(token), timeout=30)


def health(agent):
    return httpx.get(f"{agent.url}/health").json()


def test_signed_bundle_installs_and_is_served(start_agent, make_bundle, model_file):
    agent = start_agent()

    answer = put(agent, make_bundle("1.0.0"))

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"
    assert answer.json()["smoke"]["agreement"] == 1.0 and answer.json()["smoke"]["n"] == 6
    h = health(agent)
    assert (h["status"], h["version"], h["previous"]) == ("ok", "1.0.0", None)
    assert h["model_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert (agent.state_dir / "versions" / "1.0.0" / "model.tflite").is_file()


def test_predict_classifies_a_png_like_the_build_machine(start_agent, make_bundle, smoke_set):
    agent = start_agent()
    png = support.png_headers()
    assert httpx.post(f"{agent.url}/predict", content=b"x", headers=png).status_code == 503
    put(agent, make_bundle())
    pixels, expected = smoke_set

    for image, want in zip(pixels, expected, strict=True):
        answer = httpx.post(
            f"{agent.url}/predict", content=support.png_bytes(image), headers=png
        ).json()
        assert answer["index"] == want
        assert answer["label"] == support.SPEC.labels[want]
        assert answer["version"] == "1.0.0" and len(answer["scores"]) == 3
        assert abs(sum(answer["scores"]) - 1.0) < 0.05  # dequantized softmax

    bad = httpx.post(f"{agent.url}/predict", content=b"not an image", headers=png)
    assert bad.status_code == 400 and "not an image" in bad.json()["detail"]


def tampered(path, change):
    with tarfile.open(path) as tar:
        parts = {m.name: tar.extractfile(m).read() for m in tar}
    return bundle.pack_tar(change(parts))


def flip_byte(parts):
    model = bytearray(parts["model.tflite"])
    model[100] ^= 1
    return {**parts, "model.tflite": bytes(model)}


def edit_manifest_after_signing(parts):
    return {**parts, "manifest.json": parts["manifest.json"].replace(b"1.0.1", b"1.0.9")}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (flip_byte, "sha256"),
        (edit_manifest_after_signing, "does not verify"),
        (None, "does not verify"),
    ],
    ids=["model-byte", "manifest-after-signing", "untrusted-key"],
)
def test_tampered_bundle_is_refused_and_served_version_stays(
    start_agent, make_bundle, keys, change, reason
):
    agent = start_agent()
    put(agent, make_bundle("1.0.0"))
    if change is None:
        data = make_bundle("1.0.1", key=keys.other_private).read_bytes()
    else:
        data = tampered(make_bundle("1.0.1"), change)

    answer = put(agent, data)

    assert answer.status_code == 400 and reason in answer.json()["detail"]
    assert (health(agent)["version"], health(agent)["status"]) == ("1.0.0", "ok")
    assert sorted(p.name for p in (agent.state_dir / "versions").iterdir()) == ["1.0.0"]


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_wrong_or_missing_token_is_401_and_installs_nothing(start_agent, make_bundle, token):
    agent = start_agent()

    assert put(agent, make_bundle(), token=token).status_code == 401
    assert (
        httpx.post(f"{agent.url}/rollback", content=b"{}", headers=auth(token)).status_code == 401
    )
    assert health(agent)["status"] == "empty"
    assert list((agent.state_dir / "versions").iterdir()) == []


def rollback(agent, keys, version, sha256, sequence=None):
    order = support.rollback_order(keys, version, sha256, sequence)
    return httpx.post(f"{agent.url}/rollback", content=order, headers=auth(), timeout=30)


def test_disagreeing_smoke_test_is_degraded_until_a_signed_order_rolls_it_back(
    start_agent, make_bundle, keys, model_file
):
    agent = start_agent()
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert rollback(agent, keys, "1.0.0", sha).status_code == 409  # nothing installed
    put(agent, make_bundle("1.0.0"))

    answer = put(agent, make_bundle("2.0.0", disagree=True)).json()

    assert answer["status"] == "degraded" and answer["smoke"]["agreement"] == 0.0
    assert (health(agent)["status"], health(agent)["previous"]) == ("degraded", "1.0.0")
    back = rollback(agent, keys, "1.0.0", sha)
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["status"]) == ("1.0.0", "ok")
    assert health(agent)["version"] == "1.0.0"


def test_signed_model_that_litert_cannot_load_is_refused(start_agent, keys, tmp_path, smoke_set):
    agent = start_agent()
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 10)
    data = bundle.build_bundle(
        tmp_path / "junk.tar", junk, *smoke_set, version="9", spec=support.SPEC, metrics={},
        mlflow_run_id=None, data_fingerprint=None, private_key=keys.private,
    ).read_bytes()  # fmt: skip

    answer = put(agent, data)

    assert answer.status_code == 400 and "LiteRT cannot load" in answer.json()["detail"]
    assert health(agent)["status"] == "empty"


def test_oversized_push_is_413(start_agent, make_bundle):
    agent = start_agent(limits=AgentLimits(max_bundle_bytes=1000))

    assert put(agent, make_bundle()).status_code == 413
    assert health(agent)["status"] == "empty"


def test_same_version_with_other_contents_is_409(start_agent, make_bundle):
    agent = start_agent()
    first = make_bundle("1.0.0")
    put(agent, first)
    assert put(agent, first).status_code == 200  # the same bundle again: a no-op

    answer = put(agent, make_bundle("1.0.0", disagree=True))

    assert answer.status_code == 409 and "new version" in answer.json()["detail"]
    assert health(agent)["version"] == "1.0.0"


def test_only_current_and_previous_are_kept(start_agent, make_bundle):
    agent = start_agent()
    for version in ("1", "2", "3"):
        put(agent, make_bundle(version))

    assert sorted(p.name for p in (agent.state_dir / "versions").iterdir()) == ["2", "3"]


def test_state_survives_an_agent_restart(tmp_path, keys, make_bundle, model_file):
    first = support.ThreadedAgent(tmp_path / "state", keys.public)
    put(first, make_bundle("1.0.0"))
    put(first, make_bundle("2.0.0"))
    first.stop()

    second = support.ThreadedAgent(tmp_path / "state", keys.public)
    try:
        h = health(second)
        assert (h["status"], h["version"], h["previous"]) == ("ok", "2.0.0", "1.0.0")
        sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
        assert rollback(second, keys, "1.0.0", sha).json()["version"] == "1.0.0"
    finally:
        second.stop()


def test_cli_agent_installs_and_restores_after_restart(tmp_path, keys, make_bundle):
    token_file = tmp_path / "token"
    token_file.write_text(support.TOKEN + "\n")
    token_file.chmod(0o600)
    state = tmp_path / "state"
    proc, url = support.start_cli_agent(state, keys.public, token_file)
    try:
        answer = httpx.put(
            f"{url}/bundle", content=make_bundle().read_bytes(), headers=auth(), timeout=30
        )
        assert answer.json()["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    proc, url = support.start_cli_agent(state, keys.public, token_file)
    try:
        h = httpx.get(f"{url}/health").json()
        assert (h["status"], h["version"]) == ("ok", "1.0.0")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_without_a_token_is_a_one_line_error(tmp_path, keys, monkeypatch, capsys):
    monkeypatch.delenv("EDGETUNE_AGENT_TOKEN", raising=False)
    argv = [
        "agent",
        "serve",
        "--port",
        "1",
        "--state-dir",
        str(tmp_path),
        "--trusted-key",
        str(keys.public),
    ]

    assert cli.main(argv) == 2
    assert (
        capsys.readouterr().err
        == "edgetune: error: no agent token: pass --token-file or set EDGETUNE_AGENT_TOKEN\n"
    )


def test_agent_serves_without_importing_tensorflow(tmp_path, keys, make_bundle, smoke_set):
    agent = support.ThreadedAgent(tmp_path / "state", keys.public)
    put(agent, make_bundle())
    agent.stop()
    (tmp_path / "image.png").write_bytes(support.png_bytes(smoke_set[0][0]))
    code = f"""
import sys
from fastapi.testclient import TestClient
from edgetune.agent.server import create_app
app = create_app({str(tmp_path / "state")!r}, {str(keys.public)!r}, "t")
client = TestClient(app, base_url="http://127.0.0.1")
assert client.get("/health").json()["status"] == "ok"
with open({str(tmp_path / "image.png")!r}, "rb") as f:
    answer = client.post("/predict", content=f.read(), headers={{"Content-Type": "image/png"}})
    assert answer.json()["index"] == {int(smoke_set[1][0])}
assert "tensorflow" not in sys.modules, "tensorflow was imported"
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_predict_takes_one_image_file_as_a_multipart_form_within_the_same_limits(
    start_agent, make_bundle, smoke_set
):
    agent = start_agent(limits=AgentLimits(max_image_bytes=4096))
    put(agent, make_bundle())
    pixels, expected = smoke_set
    image = support.png_bytes(pixels[0])

    def form(files):
        return httpx.post(f"{agent.url}/predict", files=files)

    answer = form({"image": ("digit.png", image, "image/png")})
    assert answer.status_code == 200 and answer.json()["index"] == expected[0]
    two = form([("a", ("a.png", image, "image/png")), ("b", ("b.png", image, "image/png"))])
    assert two.status_code == 400 and "more than one part" in two.json()["detail"]
    text = form({"image": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 415
    field = httpx.post(f"{agent.url}/predict", data={"a": "b"}, files={"f": ("x.png", image)})
    assert field.status_code == 400  # a field besides the file
    huge = form({"image": ("big.png", b"\0" * 5000, "image/png")})
    assert huge.status_code == 413
    broken = httpx.post(f"{agent.url}/predict", content=b"--x\r\njunk",
                        headers={"Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert broken.status_code == 400
