"""The agent's pull loop: poll a signed channel, install through the push path, report status."""

from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetune.agent.service import Agent
from edgetune.channel import (
    Channel,
    check_device_id,
    download_bundle,
    read_channel,
    write_status,
)
from edgetune.errors import EdgetuneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullConfig:
    """Where to poll, how often (seconds, jittered by +-50 %), and who this device is."""

    uri: str
    interval_s: float
    device_id: str

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if self.interval_s <= 0:
            raise EdgetuneError(f"--interval {self.interval_s}: must be above 0 seconds")


class Puller:
    """A background thread that keeps the agent on what the channel names."""

    def __init__(self, agent: Agent, config: PullConfig, max_bundle_bytes: int) -> None:
        self.agent, self.config, self._max_bytes = agent, config, max_bundle_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgetune-pull", daemon=True)

    def start(self) -> None:
        """Starts polling in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stops polling, waiting for a poll in progress (an install) to finish."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        # Jitter the first poll too: a fleet restarted at once must not poll in step.
        delay = random.uniform(0, min(self.config.interval_s, 1.0))
        while not self._stop.wait(delay):
            self.poll_once()
            delay = self.config.interval_s * random.uniform(0.5, 1.5)

    def poll_once(self) -> dict[str, Any]:
        """One poll: verify, maybe install, then write and return this device's status."""
        channel: Channel | None = None
        try:
            channel = read_channel(self.config.uri, self.agent.trusted_key)
            state, reason = self._follow(channel)
        except EdgetuneError as e:
            state, reason = "refused", str(e)
        except OSError as e:  # the store is unreachable: try again next poll
            state, reason = "error", f"{type(e).__name__}: {e}"
        if reason:
            log.warning("pull %s: %s: %s", self.config.uri, state, reason)
        status = self._status(channel, state, reason)
        try:
            write_status(self.config.uri, self.config.device_id, status)
        except OSError as e:
            log.warning("cannot write status to %s: %s", self.config.uri, e)
        return status

    def _follow(self, channel: Channel) -> tuple[str, str | None]:
        now = time.time()
        if now > channel.expires:
            return "refused", f"channel expired at {time.ctime(channel.expires)}"
        if self._serves(channel):
            return "current", None
        if not channel.admits(self.config.device_id, now):
            return "waiting", f"not in the open wave ({channel.active_percent(now)} %)"
        spool = self.agent.store.spool
        with tempfile.TemporaryDirectory(dir=spool, prefix="pull-") as tmp:
            path = Path(tmp) / "bundle.tar"
            download_bundle(self.config.uri, channel, path, self._max_bytes)
            self.agent.install(path)  # exactly what a push runs: verify, sequence, smoke test
        return "installed", None

    def _serves(self, channel: Channel) -> bool:
        health = self.agent.health()
        return health["model_sha256"] == channel.model_sha256 and health["version"] == (
            channel.version
        )

    def _status(self, channel: Channel | None, state: str, reason: str | None) -> dict[str, Any]:
        health = self.agent.health()
        serving = channel is not None and self._serves(channel)
        return {
            "device": self.config.device_id,
            "state": state,
            "reason": reason,
            "sha256": channel.sha256 if serving else None,
            "channel_sequence": channel.sequence if channel else None,
            "sequence": health["sequence"],
            "version": health["version"],
            "model_sha256": health["model_sha256"],
            "health": health["status"],
            "time": time.time(),
        }
