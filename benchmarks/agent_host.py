"""Many real device agents in one process, for fleet benchmarks too large for a process each.

    .venv/bin/python -m benchmarks.agent_host --root DIR --first 0 --count 50 \
        --trusted-key signing.pub --token-file token [--pull URI --interval 5]

Each agent is the real agent app (`create_app`: its own state folder, LiteRT interpreter and
limits) under its own uvicorn server with its own event loop, in its own thread, on its own
loopback port; with --pull, its app runs the real pull loop too. They share one Python
interpreter (and its GIL) instead of 200 separate ones. The host writes
``<root>/host-<first>.json`` (pid, urls, state folders, device ids) once every agent answers,
and on SIGTERM it adds how many channel reads, bundle downloads and status writes its pull
loops made (and their bytes), then exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from edgetune import files
from edgetune.agent import pull
from edgetune.agent.limits import AgentLimits
from edgetune.agent.pull import PullConfig
from edgetune.agent.runner import uvicorn_config
from edgetune.agent.server import create_app
from edgetune.agent.tokens import read_token
from edgetune.fleet import FleetDevice
from edgetune.signing import load_public_key

AGENTS_PER_HOST = 50
TOKEN_ENV = "EDGETUNE_BENCH_AGENT_TOKEN"
TRAFFIC = {"polls": 0, "channel_bytes": 0, "downloads": 0, "download_bytes": 0,
           "status_writes": 0, "status_bytes": 0}  # fmt: skip
_traffic_lock = threading.Lock()


def _count(**added: int) -> None:
    with _traffic_lock:
        for key, value in added.items():
            TRAFFIC[key] += value


def count_pull_traffic() -> None:
    """Wraps the pull loop's channel calls to count what each moves (sizes from the channel)."""
    read, download, write = pull.read_channel, pull.download_bundle, pull.write_status

    def read_channel(uri, key):
        channel = read(uri, key)
        root = Path(uri)
        _count(polls=1, channel_bytes=sum((root / n).stat().st_size
                                          for n in ("channel.json", "channel.json.sig")))  # fmt: skip
        return channel

    def download_bundle(uri, channel, target, max_bytes):
        download(uri, channel, target, max_bytes)
        _count(downloads=1, download_bytes=channel.size)

    def write_status(uri, device_id, status):
        write(uri, device_id, status)
        _count(status_writes=1, status_bytes=len(json.dumps(status, indent=2)) + 1)

    pull.read_channel, pull.download_bundle, pull.write_status = (
        read_channel, download_bundle, write_status)  # fmt: skip


def start_agent(state_dir: Path, key: Any, token: str, pull_config: PullConfig | None) -> tuple:
    """One agent app under its own uvicorn server in a thread; returns (server, url)."""
    limits = AgentLimits()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(state_dir, key, token, limits=limits, pull=pull_config)
    server = uvicorn.Server(uvicorn_config(app, limits, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, url, thread


class Hosts:
    """`agent_host` processes holding `n` agents, `AGENTS_PER_HOST` each."""

    def __init__(self, root: Path, n: int, public: Path, token_file: Path, **pull: Any) -> None:
        self.root, self.procs = root, []
        root.mkdir(parents=True, exist_ok=True)
        extra = ["--pull", str(pull["uri"]), "--interval", str(pull["interval"])] if pull else []
        for first in range(0, n, AGENTS_PER_HOST):
            count = min(AGENTS_PER_HOST, n - first)
            cmd = [sys.executable, "-m", "benchmarks.agent_host", "--root", str(root),
                   "--first", str(first), "--count", str(count), "--trusted-key", str(public),
                   "--token-file", str(token_file), *extra]  # fmt: skip
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        self.docs = [
            self._wait(root / f"host-{first}.json") for first in range(0, n, AGENTS_PER_HOST)
        ]

    def _wait(self, path: Path, timeout_s: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"agent hosts did not start ({path.name})")
            time.sleep(0.2)
        return files.read_json(path)

    @property
    def devices(self) -> list[FleetDevice]:
        """The agents as fleet devices, in id order."""
        return [FleetDevice(name=d, url=u, token_ref=f"env:{TOKEN_ENV}")
                for doc in self.docs for d, u in zip(doc["devices"], doc["urls"], strict=True)]  # fmt: skip

    @property
    def state_dirs(self) -> list[Path]:
        """Every agent's state folder (state.json holds what it ever installed)."""
        return [Path(s) for doc in self.docs for s in doc["state_dirs"]]

    def rss_mib(self) -> list[float]:
        """Each host process's resident set (MiB)."""
        return [status_kib(p.pid, "VmRSS") / 1024 for p in self.procs]

    def stop(self) -> dict[str, int]:
        """Stops the hosts; returns the pull traffic they counted, summed."""
        for p in self.procs:
            p.terminate()
        total: dict[str, int] = {}
        for p, first in zip(self.procs, range(0, 10**6, AGENTS_PER_HOST), strict=False):
            p.wait(timeout=60)
            doc = files.read_json(self.root / f"host-{first}.json")
            for k, v in doc.get("traffic", {}).items():
                total[k] = total.get(k, 0) + v
        return total


def status_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in KiB (VmRSS: resident now, VmHWM: its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    """Command line: starts the agents, reports them, serves until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--trusted-key", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--pull", default=None)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # 200 pull loops waiting for their wave: not news
    key, token = load_public_key(args.trusted_key), read_token(args.token_file)
    if args.pull:
        count_pull_traffic()
    agents = []
    for i in range(args.first, args.first + args.count):
        device = f"dev-{i:04d}"
        config = PullConfig(args.pull, args.interval, device) if args.pull else None
        agents.append(
            (device, args.root / device, *start_agent(args.root / device, key, token, config))
        )
    deadline = time.monotonic() + 300
    while not all(server.started for _, _, server, _, _ in agents):
        if time.monotonic() > deadline:
            raise SystemExit("agents did not start within 300 s")
        time.sleep(0.05)
    out = args.root / f"host-{args.first}.json"
    doc = {"pid": os.getpid(), "devices": [d for d, *_ in agents],
           "urls": [u for *_, u, _ in agents], "state_dirs": [str(s) for _, s, *_ in agents]}  # fmt: skip
    files.write_json(out, doc)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    while not stopped.wait(0.5):
        if os.getppid() == 1:  # the benchmark that started us is gone
            break
    for *_, server, _, _ in agents:
        server.should_exit = True
    for *_, thread in agents:
        thread.join(timeout=30)
    files.write_json(out, {**doc, "traffic": dict(TRAFFIC)})


if __name__ == "__main__":
    main()
