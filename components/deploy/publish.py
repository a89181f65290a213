"""deploy by pull: the signed bundle published to a channel its devices poll, instead of a push.

`deploy_mode=pull` writes the bundle and a signed ``channel.json`` (sequence, sha256, waves by
device-id hash, expiry) to `channel_uri` with `edgetune.channel.publish`; the devices install
it on their next poll and report under the channel's ``status/`` (``edgetune fleet status``).
At publication no device has answered yet, so the report lists none and `champion` does not
move: it says what was published, where, and for which waves.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from edgetune.channel import parse_waves, publish
from edgetune.components.deploy.core import RolloutReport, rollout_to_fleet

log = logging.getLogger(__name__)

PUSH = "push"
PULL = "pull"
MODES = (PUSH, PULL)


def publish_release(
    bundle_path: str | os.PathLike[str], channel_uri: str, signing_key: str, waves: str = "100"
) -> RolloutReport:
    """Publishes the bundle to the channel at `channel_uri`; a report of what was published.

    Args:
        bundle_path: the signed bundle.
        channel_uri: a folder or any fsspec URI (``s3://bucket/fleet``).
        signing_key: the Ed25519 private key (PEM) that signed the bundle; it signs the channel.
        waves: ``PERCENT[@SECONDS],...`` of devices (by id hash) allowed to install, widening.

    Raises:
        EdgetuneError: bad waves, or the bundle is not signed by `signing_key`.
    """
    doc = publish(bundle_path, channel_uri, signing_key, waves=parse_waves(waves))
    channel = {"uri": channel_uri, **doc}
    log.info(
        "published %s (sequence %d, bundle sha256 %s, %d bytes) to %s; waves %s",
        doc["version"], doc["sequence"], doc["sha256"], doc["size"], channel_uri, waves,
    )  # fmt: skip
    return RolloutReport(doc["version"], [], doc["model_sha256"], doc["sequence"],
                         mode=PULL, channel=channel)  # fmt: skip


def deliver(
    bundle_path: str | os.PathLike[str],
    *,
    mode: str,
    fleet_file: str,
    signing_key: str,
    channel_uri: str = "",
    channel_waves: str = "100",
    **push: Any,
) -> RolloutReport:
    """Ships the bundle as `mode` says: pushed to the fleet file's devices, or published.

    `push` holds `rollout_to_fleet`'s options (timeout, waves, tags, concurrency).
    """
    if mode == PULL:
        return publish_release(bundle_path, channel_uri, signing_key, channel_waves)
    return rollout_to_fleet(bundle_path, fleet_file, signing_key=signing_key, **push)
