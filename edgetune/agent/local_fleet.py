"""A fleet of real agents on this machine: what `make local-run`, the tests and the benchmark deploy to.

Each agent is its own `edgetune agent serve` process with its own state folder and token,
and the fleet file lists them as any fleet file would. The parent binds each agent's
loopback socket (port 0: the kernel picks a free one) and hands the listening socket to the
child, so no other process can take the port between choosing and binding it.
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

from edgetune import files
from edgetune.agent.tokens import write_token
from edgetune.errors import EdgetuneError

HOST = "127.0.0.1"


@dataclass
class LocalFleet:
    """Running local agents and the fleet file that lists them."""

    root: Path
    fleet_file: Path
    urls: list[str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def wait_up(self, timeout_s: float = 60.0) -> None:
        """Returns once every agent answers /health, and the fleet file lists them.

        Raises:
            EdgetuneError: an agent exited or did not answer within `timeout_s` (the fleet is
                stopped).
        """
        names = [f"agent-{i + 1}" for i in range(len(self.urls))]
        try:
            for proc, url, name in zip(self.processes, self.urls, names, strict=True):
                _wait_until_up(proc, url, self.root / name, timeout_s)
            entries = [
                {"name": name, "url": url, "token_ref": f"file:{name}/token", "tags": ["local"]}
                for name, url in zip(names, self.urls, strict=True)
            ]
            doc = yaml.safe_dump({"devices": entries}, sort_keys=False)
            files.write_bytes(self.fleet_file, doc.encode())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminates every agent process, killing any that has not exited within 10 seconds."""
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
    n: int,
    root: str | os.PathLike,
    trusted_key: str | os.PathLike,
    *,
    timeout_s: float = 60.0,
    wait: bool = True,
) -> LocalFleet:
    """Starts `n` agents under `root` (state, token and log per agent) and waits until each answers.

    With `wait=False` it returns once they are started (they boot in the background, while
    the caller does other work); `LocalFleet.wait_up` then waits and writes the fleet file.

    Raises:
        EdgetuneError: an agent exits or does not answer /health within `timeout_s` (the
            message carries the end of its log).
    """
    root = Path(root)
    fleet = LocalFleet(root=root, fleet_file=root / "fleet.yaml", urls=[])
    try:
        for i in range(n):  # start them all, then wait: they boot in parallel
            home = root / f"agent-{i + 1}"
            home.mkdir(parents=True, exist_ok=True)
            write_token(home / "token", secrets.token_urlsafe(32))
            proc, url = _spawn(home, trusted_key)
            fleet.processes.append(proc)
            fleet.urls.append(url)
    except BaseException:
        fleet.stop()
        raise
    if wait:
        fleet.wait_up(timeout_s)
    return fleet


def _spawn(home: Path, trusted_key: str | os.PathLike) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "edgetune.cli", "agent", "serve", "--host", HOST,
               "--fd", str(sock.fileno()), "--parent-pid", str(os.getpid()), "--state-dir", str(home / "state"),
               "--trusted-key", str(trusted_key), "--token-file", str(home / "token")]  # fmt: skip
        with open(home / "agent.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),)
            )
    # The child holds its own copy of the listening socket; ours is closed here.
    return proc, f"http://{HOST}:{port}"


@contextlib.contextmanager
def local_fleet(
    n: int, root: str | os.PathLike, trusted_key: str | os.PathLike
) -> Iterator[LocalFleet]:
    """`start_local_fleet` as a context manager: the agents are stopped on exit."""
    fleet = start_local_fleet(n, root, trusted_key)
    try:
        yield fleet
    finally:
        fleet.stop()


def _wait_until_up(proc: subprocess.Popen, url: str, home: Path, timeout_s: float) -> None:
    """Returns once the agent answers /health; it cannot lose its port, so one wait suffices."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"{url}/health", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    log = home / "agent.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise EdgetuneError(
        f"local agent at {url} did not start ({tail[0] if tail else 'no output'}); log: {log}"
    )
