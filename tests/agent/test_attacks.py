"""The agent under attack: each case an attack that once worked, now refused cheaply.

Everything runs on 127.0.0.1, bounded in count and time. Cases that used to cost memory run
against an agent subprocess whose address space is capped (RLIMIT_AS), so a regression
fails the test instead of the machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import resource
import signal
import socket
import struct
import tarfile
import time
import zlib
from pathlib import Path

import httpx
import pytest
from support import agents as support

from edgetune import bundle, cli
from edgetune.agent.limits import AgentLimits
from edgetune.bundle import BundleRejected

auth = support.auth
PNG = support.png_headers()
AGENT_MEMORY_CAP = 1 << 30  # the agent needs ~0.4 GiB of address space; the attacks asked for more


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def put(agent_url: str, data: bytes, **headers: str) -> httpx.Response:
    return httpx.put(f"{agent_url}/bundle", content=data, headers={**auth(), **headers}, timeout=30)


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


def sparse_tar(real_size: int) -> bytes:
    """A 1.5 KB tar whose one GNU sparse member expands to `real_size` bytes when read."""
    info = tarfile.TarInfo("model.tflite")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 512
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    # One data block at the very end of a `real_size` file: the rest is holes.
    header[386:410] = b"%011o\0%011o\0" % (real_size - 512, 512)
    header[483:495] = b"%011o\0" % real_size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + b"\x01" * 512 + b"\0" * 1024


def png_header_only(width: int, height: int) -> bytes:
    """A palette PNG declaring width x height, with a tiny zlib stream of zeros as data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)  # 1-bit palette
    rows = zlib.compress(b"\0" * (1 + (width + 7) // 8) * 64)  # the first 64 rows
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", b"\0\0\0\xff\xff\xff")
        + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )  # fmt: skip


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AGENT_MEMORY_CAP, AGENT_MEMORY_CAP))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(support.TOKEN)
    path.chmod(0o600)
    return path


@pytest.fixture
def capped_agent(tmp_path, keys, token_file):
    """A CLI agent subprocess limited to 1 GiB of address space, with an installed model."""
    proc, url = support.start_cli_agent(
        tmp_path / "state", keys.public, token_file, preexec_fn=cap_memory
    )
    yield proc, url
    proc.terminate()
    proc.wait(timeout=10)


# ---------------------------------------------------------------------------- bundles


def test_sparse_member_is_refused_from_its_header_without_expanding_it(keys):
    data = sparse_tar(6 << 30)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # what plain tarfile makes of it
        (member,) = tar.getmembers()
    assert len(data) <= 2048 and member.isreg() and member.size == 6 << 30
    with pytest.raises(BundleRejected, match="not a plain regular file"):
        bundle.open_bundle(data, keys.public)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE, tarfile.DIRTYPE, tarfile.CONTTYPE])  # fmt: skip
def test_every_non_regular_member_type_is_refused(keys, kind):
    info = tarfile.TarInfo("model.tflite")
    info.type = kind
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info)

    with pytest.raises(BundleRejected, match="not a plain regular file|not a flat file"):
        bundle.open_bundle(buffer.getvalue(), keys.public)


def test_sizes_are_checked_against_the_cap_before_anything_is_read(make_bundle, keys):
    data = make_bundle().read_bytes()

    with pytest.raises(BundleRejected, match="declare more than the limit of 1000 bytes"):
        bundle.open_bundle(data, keys.public, max_bytes=1000)


def test_sparse_bomb_against_a_memory_capped_agent_is_400_and_it_stays_healthy(capped_agent):
    proc, url = capped_agent

    for declared in (1 << 30, 6 << 30, 64 << 30):
        answer = put(url, sparse_tar(declared))
        assert answer.status_code == 400 and "sparse" in answer.json()["detail"]
    assert proc.poll() is None and health(url)["status"] == "empty"


# ---------------------------------------------------------------------------- /predict


@pytest.mark.parametrize("side", [13000, 20000])
def test_pixel_bomb_is_413_before_decoding_on_a_memory_capped_agent(
    capped_agent, make_bundle, side
):
    proc, url = capped_agent
    put(url, make_bundle().read_bytes())
    bomb = png_header_only(side, side)
    assert len(bomb) < 2 * 1024

    start = time.monotonic()
    answer = httpx.post(f"{url}/predict", content=bomb, headers=PNG, timeout=30)

    assert answer.status_code == 413, answer.text
    assert "before decoding" in answer.json()["detail"] or "pixels" in answer.json()["detail"]
    assert time.monotonic() - start < 5  # refused from the header, not after a decode
    assert proc.poll() is None and health(url)["status"] == "ok"


def test_pixel_limit_is_the_configured_one(start_agent, make_bundle):
    agent = start_agent(limits=AgentLimits(max_pixels=64))  # 8x8 passes, 9x9 does not
    put(agent.url, make_bundle().read_bytes())

    ok = httpx.post(f"{agent.url}/predict", content=png_header_only(8, 8), headers=PNG)
    big = httpx.post(f"{agent.url}/predict", content=png_header_only(9, 9), headers=PNG)

    assert ok.status_code in (200, 400)  # passes the gate (decoding may refuse the data)
    assert big.status_code == 413 and "9x9" in big.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({**PNG, "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "multipart/form-data; boundary=x", "Origin": "http://evil.example"}, 403),
        ({**PNG, "Sec-Fetch-Site": "cross-site"}, 403),
        ({**PNG, "Host": "evil.example"}, 403),
        ({**PNG, "Host": "evil.example:8470"}, 403),
        ({**PNG, "Host": "localhost:8470"}, 200),
        ({**PNG, "Origin": "https://app.local"}, 200),
    ],
    ids=[
        "text-plain",
        "form",
        "origin",
        "multipart-origin",
        "fetch-site",
        "host",
        "host-port",
        "localhost",
        "allowed",
    ],
)
def test_browser_style_and_cross_site_requests_are_refused(
    start_agent, make_bundle, smoke_set, headers, status
):
    agent = start_agent(allow_origins=["https://app.local"])
    put(agent.url, make_bundle().read_bytes())
    image = support.png_bytes(smoke_set[0][0])

    answer = httpx.post(f"{agent.url}/predict", content=image, headers=headers)

    assert answer.status_code == status, answer.text


def test_predict_token_when_configured(start_agent, make_bundle, smoke_set):
    agent = start_agent(predict_token="predict-secret-0123456789-abcdefgh")
    put(agent.url, make_bundle().read_bytes())
    image = support.png_bytes(smoke_set[0][0])

    assert httpx.post(f"{agent.url}/predict", content=image, headers=PNG).status_code == 401
    with_token = {**PNG, **auth("predict-secret-0123456789-abcdefgh")}
    assert httpx.post(f"{agent.url}/predict", content=image, headers=with_token).status_code == 200


def half_sent(
    url: str, method: str, path: str, length: int, extra: str = "", body: bytes = b"x"
) -> socket.socket:
    """A request whose headers are complete but whose body is not: it holds its slot."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
            f"{extra}\r\n")  # fmt: skip
    sock.sendall(head.encode() + body)
    return sock


def test_one_install_and_a_bounded_number_of_predictions_at_a_time(start_agent, make_bundle):
    agent = start_agent(limits=AgentLimits(predict_concurrency=1, body_timeout_s=10))
    data = make_bundle().read_bytes()
    token = f"Authorization: Bearer {support.TOKEN}\r\n"
    upload = half_sent(agent.url, "PUT", "/bundle", 1 << 20, token, body=b"\0" * (64 << 10))
    slow = half_sent(agent.url, "POST", "/predict", 1000, "Content-Type: image/png\r\n")
    time.sleep(0.5)  # both handlers are now waiting for their bodies
    try:
        # The upload goes to a file as it arrives, not into memory.
        (spooled,) = (agent.state_dir / "spool").iterdir()
        assert spooled.stat().st_size >= 32 << 10
        assert put(agent.url, data).status_code == 429
        image = httpx.post(f"{agent.url}/predict", content=b"x", headers=PNG)
        assert image.status_code == 429
        assert health(agent.url)["status"] == "empty"  # reads are never blocked
    finally:
        upload.close()
        slow.close()
    time.sleep(0.3)
    assert put(agent.url, data).status_code == 200  # free again once they are gone


# ------------------------------------------------------------------------ time limits


def test_stalled_body_is_408_at_the_deadline(start_agent):
    agent = start_agent(limits=AgentLimits(body_timeout_s=1))
    sock = half_sent(agent.url, "POST", "/predict", 1000, "Content-Type: image/png\r\n")
    try:
        sock.settimeout(5)
        assert sock.recv(200).startswith(b"HTTP/1.1 408")
    finally:
        sock.close()


def test_half_sent_headers_are_cut_off_and_health_stays_reachable(start_agent):
    agent = start_agent(limits=AgentLimits(header_timeout_s=1, max_connections=64))
    host, port = agent.url.rsplit("/", 1)[-1].split(":")
    stalled = []
    for _ in range(80):  # more than max_connections
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        stalled.append(sock)
    try:
        time.sleep(1.5)
        for sock in stalled:  # the agent closed every one of them
            assert sock.recv(100) == b""
        assert httpx.get(f"{agent.url}/health", timeout=5).status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def test_a_flood_of_broken_requests_writes_no_tracebacks(tmp_path, keys, token_file):
    log = tmp_path / "agent.log"
    with open(log, "wb") as err:
        proc, url = support.start_cli_agent(tmp_path / "state", keys.public, token_file,
                                            stderr=err)  # fmt: skip
    try:
        host, port = url.rsplit("/", 1)[-1].split(":")
        for i in range(200):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(
                    b"\x16\x03\x01 garbage %d\r\n\r\n" % i if i % 2 else b"GET /\x00 HTTP/9\r\n\r\n"
                )
                sock.recv(100)
        assert health(url)["status"] == "empty"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and len(text.splitlines()) < 300


# ------------------------------------------------------------------- anti-rollback


def sha(path: Path) -> str:
    return hashlib.sha256(members(path)["model.tflite"]).hexdigest()


def test_downgrade_and_replay_are_refused(start_agent, make_bundle):
    agent = start_agent()
    v1 = make_bundle("1.0.0", sequence=100)
    v2 = make_bundle("2.0.0", sequence=200)
    never_seen = make_bundle("0.9.0", sequence=50)
    assert put(agent.url, v1.read_bytes()).status_code == 200
    assert put(agent.url, make_bundle("3.0.0", sequence=300).read_bytes()).status_code == 200

    for old in (v2, v1, never_seen):
        answer = put(agent.url, old.read_bytes())
        assert answer.status_code == 409 and "not above 300" in answer.json()["detail"]
    assert (health(agent.url)["version"], health(agent.url)["sequence"]) == ("3.0.0", 300)


def test_a_version_name_is_never_reused_for_other_content_even_after_pruning(
    start_agent, make_bundle
):
    agent = start_agent()
    for i, version in enumerate(("1", "2", "3"), start=1):
        put(agent.url, make_bundle(version, sequence=i).read_bytes())
    assert not (agent.state_dir / "versions" / "1").exists()  # pruned

    answer = put(agent.url, make_bundle("1", disagree=True, sequence=10).read_bytes())

    assert answer.status_code == 409 and "other contents" in answer.json()["detail"]


def test_rollback_needs_a_fresh_signed_order_for_an_installed_version(
    start_agent, make_bundle, keys, model_file
):
    agent = start_agent()
    model_sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    put(agent.url, make_bundle("1.0.0", sequence=10).read_bytes())
    put(agent.url, make_bundle("2.0.0", disagree=True, sequence=20).read_bytes())

    def post(body: bytes) -> httpx.Response:
        return httpx.post(f"{agent.url}/rollback", content=body, headers=auth(), timeout=30)

    forged = support.rollback_order(keys, "1.0.0", model_sha, 30).replace(
        b'"order": "', b'"order": "e'
    )
    assert post(forged).status_code == 400
    assert post(support.rollback_order(keys, "1.0.0", model_sha, 15)).status_code == 409  # old
    assert post(support.rollback_order(keys, "1.0.0", "0" * 64, 30)).status_code == 409
    assert post(support.rollback_order(keys, "0.1", model_sha, 30)).status_code == 409
    order = support.rollback_order(keys, "1.0.0", model_sha, 30)
    assert post(order).json()["version"] == "1.0.0"
    assert post(order).status_code == 409  # an order is used once
    assert health(agent.url)["sequence"] == 30


def test_if_match_makes_a_push_compare_and_swap(start_agent, make_bundle):
    agent = start_agent()
    before = health(agent.url)["etag"]
    put(agent.url, make_bundle("1.0.0", sequence=1).read_bytes(), **{"If-Match": before})

    stale = put(agent.url, make_bundle("2.0.0", sequence=2).read_bytes(), **{"If-Match": before})

    assert stale.status_code == 412 and health(agent.url)["version"] == "1.0.0"
    fresh = put(agent.url, make_bundle("2.0.0", sequence=2).read_bytes(),
                **{"If-Match": health(agent.url)["etag"]})  # fmt: skip
    assert fresh.status_code == 200 and fresh.json()["etag"] != before


# --------------------------------------------------------------------- disk and state


def test_leftovers_of_a_crash_are_cleaned_at_start(tmp_path, keys, make_bundle):
    first = support.ThreadedAgent(tmp_path / "state", keys.public)
    put(first.url, make_bundle("1.0.0").read_bytes())
    first.stop()
    versions = tmp_path / "state" / "versions"
    (versions / ".1.1.0.abc123").mkdir()  # a half-written install
    (versions / ".1.1.0.abc123" / "model.tflite").write_bytes(b"\0" * 1000)
    (versions / "0.5.0").mkdir()  # an orphan: installed, never pointed at
    (tmp_path / "state" / "spool" / "upload-x.tar").write_bytes(b"\0" * 1000)

    second = support.ThreadedAgent(tmp_path / "state", keys.public)
    try:
        assert sorted(p.name for p in versions.iterdir()) == ["1.0.0"]
        assert list((tmp_path / "state" / "spool").iterdir()) == []
        assert health(second.url)["version"] == "1.0.0"
    finally:
        second.stop()


def test_full_disk_is_507_and_nothing_changes(tmp_path, keys, token_file, make_bundle):
    data = make_bundle().read_bytes()

    def small_files() -> None:  # the kernel refuses writes past this size (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(data) // 2, len(data) // 2))

    proc, url = support.start_cli_agent(tmp_path / "state", keys.public, token_file,
                                        preexec_fn=small_files)  # fmt: skip
    try:
        answer = put(url, data)
        assert answer.status_code == 507 and "no room" in answer.json()["detail"]
        assert health(url)["status"] == "empty"
        assert list((tmp_path / "state" / "spool").iterdir()) == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_health_error_does_not_disclose_the_state_path(tmp_path, keys, make_bundle):
    first = support.ThreadedAgent(tmp_path / "state", keys.public)
    put(first.url, make_bundle("1.0.0").read_bytes())
    first.stop()
    (tmp_path / "state" / "versions" / "1.0.0" / "model.tflite").write_bytes(b"swapped")

    second = support.ThreadedAgent(tmp_path / "state", keys.public)
    try:
        error = health(second.url)["error"]
        assert "cannot restore 1.0.0" in error and str(tmp_path) not in error
    finally:
        second.stop()


def test_docs_endpoints_are_off(start_agent):
    agent = start_agent()
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{agent.url}{path}").status_code == 404


@pytest.mark.parametrize(
    ("mode", "token", "message"),
    [
        (0o644, support.TOKEN, "has mode 0644; it must be 0600"),
        (0o600, "short", "token of 5 bytes; at least 32 accepted"),
        (0o600, "x" * 31, "token of 31 bytes; at least 32 accepted"),
        (0o600, "\u00e9" * 15, "token of 30 bytes; at least 32 accepted"),
    ],
)
def test_weak_token_files_are_refused_in_one_line(tmp_path, keys, capsys, mode, token, message):
    path = tmp_path / "token"
    path.write_text(token)
    path.chmod(mode)
    argv = ["agent", "serve", "--port", "1", "--state-dir", str(tmp_path / "s"),
            "--trusted-key", str(keys.public), "--token-file", str(path)]  # fmt: skip

    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --------------------------------------------------------------------------------- TLS


def test_tls_agent_serves_https_verified_against_its_certificate(tmp_path, keys, token_file,
                                                                make_bundle):  # fmt: skip
    import ssl

    cert, key = support.self_signed_cert(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    proc, url = support.start_cli_agent(tmp_path / "state", keys.public, token_file,
                                        "--tls-cert", str(cert), "--tls-key", str(key),
                                        scheme="https", verify=trust)  # fmt: skip
    try:
        assert url.startswith("https://")
        answer = httpx.put(f"{url}/bundle", content=make_bundle().read_bytes(), headers=auth(),
                           verify=trust, timeout=30)  # fmt: skip
        assert answer.status_code == 200
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is not trusted
            httpx.get(f"{url}/health", timeout=5)
        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/health", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_manifest_json_of_a_pushed_bundle_is_what_was_signed(start_agent, make_bundle):
    agent = start_agent()
    path = make_bundle("1.0.0", sequence=7)
    put(agent.url, path.read_bytes())

    on_disk = (agent.state_dir / "versions" / "1.0.0" / "manifest.json").read_bytes()
    assert on_disk == members(path)["manifest.json"] and json.loads(on_disk)["sequence"] == 7


def test_a_rollback_without_a_signed_order_is_refused(start_agent, make_bundle):
    agent = start_agent()
    put(agent.url, make_bundle("1.0.0", sequence=1).read_bytes())
    put(agent.url, make_bundle("2.0.0", disagree=True, sequence=2).read_bytes())

    for body in (b"", b"{}", b'{"version": "1.0.0"}'):
        answer = httpx.post(f"{agent.url}/rollback", content=body, headers=auth())
        assert answer.status_code == 400 and "rollback order" in answer.json()["detail"]
    assert health(agent.url)["version"] == "2.0.0"
