"""`edgetune fleet status URI`: how many devices serve what a pull channel names, who failed, why."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import fsspec

from edgetune.channel import CHANNEL_FILE, read_channel, read_statuses
from edgetune.errors import EdgetuneError
from edgetune.signing import load_public_key


def summarise(uri: str, trusted_key: str | None = None) -> dict[str, Any]:
    """The channel's sha256 and sequence, and the devices grouped by what they report.

    Without `trusted_key` the channel is read unverified (a display, not a decision).

    Raises:
        EdgetuneError: no channel at `uri`, or (with a key) it does not verify.
    """
    channel = _channel(uri, trusted_key)
    devices = read_statuses(uri)
    serving = [d["device"] for d in devices if d.get("sha256") == channel["sha256"]]
    failed = {
        d["device"]: d.get("reason") or d.get("state")
        for d in devices
        if d.get("state") in ("refused", "error", "unreadable") or d.get("health") == "degraded"
    }
    return {
        "channel": uri,
        "sha256": channel["sha256"],
        "sequence": channel["sequence"],
        "version": channel["version"],
        "devices": len(devices),
        "serving": len(serving),
        "states": dict(Counter(d.get("state", "unknown") for d in devices)),
        "failed": failed,
    }


def _channel(uri: str, trusted_key: str | None) -> dict[str, Any]:
    if trusted_key:
        c = read_channel(uri, load_public_key(trusted_key))
        return {"sha256": c.sha256, "sequence": c.sequence, "version": c.version}
    fs, root = fsspec.core.url_to_fs(uri)
    try:
        return json.loads(fs.cat_file(f"{root.rstrip('/')}/{CHANNEL_FILE}"))
    except FileNotFoundError:
        raise EdgetuneError(f"{uri}: no {CHANNEL_FILE}; publish to it first") from None


def main(args: argparse.Namespace) -> int:
    """Prints the summary; exits 1 when a device reported a failure."""
    summary = summarise(args.channel, args.trusted_key)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"channel {summary['channel']}: {summary['version']} sequence "
              f"{summary['sequence']} sha256 {summary['sha256']}")  # fmt: skip
        print(
            f"{summary['serving']}/{summary['devices']} devices serve it; states: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary["states"].items()))
        )
        for device, reason in sorted(summary["failed"].items()):
            print(f"  FAILED {device}: {reason}")
    return 1 if summary["failed"] else 0
