"""A fleet of real agents on this machine: what `make local-run`, the tests and the benchmark deploy to.

Each agent is its own `edgetune agent serve` process on a free loopback port, with its own
state folder and token, and the fleet file lists them as any fleet file would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from edgetune.components.common import files
from edgetune.errors import EdgetuneError

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class LocalFleet:
    """Running local agents and the fleet file that lists them."""

    root: Path
    fleet_file: Path
    urls: list[str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_local_fleet(
    n: int, root: str | os.PathLike, trusted_key: str | os.PathLike, *, timeout_s: float = 60.0
) -> LocalFleet:
    """Starts `n` agents under `root` (state, token and log per agent) and waits until each answers.

    Raises:
        EdgetuneError: an agent exits or does not answer /health within `timeout_s`
            (the message carries the end of its log).
    """
    root = Path(root)
    fleet = LocalFleet(root=root, fleet_file=root / "fleet.yaml", urls=[])
    entries = []
    try:
        for i in range(n):
            name = f"agent-{i + 1}"
            home = root / name
            home.mkdir(parents=True, exist_ok=True)
            token_file = home / "token"
            files.write_bytes(token_file, secrets.token_urlsafe(24).encode())
            os.chmod(token_file, 0o600)
            port = free_port()
            cmd = [sys.executable, "-m", "edgetune.cli", "agent", "serve", "--host", HOST, "--port", str(port),
                   "--state-dir", str(home / "state"), "--trusted-key", str(trusted_key), "--token-file", str(token_file)]  # fmt: skip
            with open(home / "agent.log", "ab") as log:
                fleet.processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            fleet.urls.append(f"http://{HOST}:{port}")
            entries.append(
                {
                    "name": name,
                    "url": fleet.urls[-1],
                    "token_ref": f"file:{name}/token",
                    "tags": ["local"],
                }
            )
        files.write_bytes(
            fleet.fleet_file, yaml.safe_dump({"devices": entries}, sort_keys=False).encode()
        )
        for proc, url, entry in zip(fleet.processes, fleet.urls, entries, strict=True):
            _wait_until_up(proc, url, root / entry["name"] / "agent.log", timeout_s)
    except BaseException:
        fleet.stop()
        raise
    return fleet


@contextlib.contextmanager
def local_fleet(
    n: int, root: str | os.PathLike, trusted_key: str | os.PathLike
) -> Iterator[LocalFleet]:
    fleet = start_local_fleet(n, root, trusted_key)
    try:
        yield fleet
    finally:
        fleet.stop()


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            httpx.get(f"{url}/health", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise EdgetuneError(
        f"local agent at {url} did not start ({tail[0] if tail else 'no output'}); log: {log}"
    )
