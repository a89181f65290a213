"""The local fleet make local-run deploys to: real agent processes, a fleet file, no port race."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from edgetune.agent import local_fleet
from edgetune.fleet import load_fleet, resolve_token
from edgetune.signing import generate_keypair


def test_agents_answer_and_the_fleet_file_lists_them_with_tokens(tmp_path: Path) -> None:
    _, public = generate_keypair(tmp_path / "keys")
    with local_fleet.local_fleet(2, tmp_path / "agents", public) as fleet:
        devices = load_fleet(fleet.fleet_file)
        assert [d.url for d in devices] == fleet.urls
        assert len({resolve_token(d) for d in devices}) == 2  # one secret per agent
        for url in fleet.urls:
            assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "empty"
    for proc in fleet.processes:
        assert proc.poll() is not None  # stopped on exit


def test_an_agent_whose_port_was_taken_is_restarted_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, public = generate_keypair(tmp_path / "keys")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real_free_port = local_fleet.free_port
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(local_fleet, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with local_fleet.local_fleet(1, tmp_path / "agents", public) as fleet:
            assert not fleet.urls[0].endswith(f":{taken.getsockname()[1]}")
            assert httpx.get(f"{fleet.urls[0]}/health", timeout=5).status_code == 200
    finally:
        taken.close()
