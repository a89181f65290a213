"""The local fleet make local-run deploys to: real agent processes, a fleet file, no port race."""

from __future__ import annotations

import socket
import stat
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


def test_token_files_are_owner_only_and_agents_keep_the_port_their_parent_bound(
    tmp_path: Path,
) -> None:
    _, public = generate_keypair(tmp_path / "keys")
    with local_fleet.local_fleet(2, tmp_path / "agents", public) as fleet:
        for name in ("agent-1", "agent-2"):
            token = tmp_path / "agents" / name / "token"
            assert stat.S_IMODE(token.stat().st_mode) == 0o600
            assert len(token.read_text()) >= 32
        # The port in each URL was bound by the parent and handed over: the agent is on it.
        ports = {int(url.rsplit(":", 1)[1]) for url in fleet.urls}
        assert len(ports) == 2
        for port in ports:
            with pytest.raises(OSError):  # still held by the agent
                socket.create_server(("127.0.0.1", port))
