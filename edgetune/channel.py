"""A pull channel: a signed manifest naming one bundle, on any fsspec store, that devices poll.

Layout under the channel URI (a local folder, ``s3://bucket/prefix``, ``memory://...``)::

    channel.json        what to serve: sequence, version, bundle sha256, waves, expiry
    channel.json.sig    detached Ed25519 signature of channel.json's exact bytes
    bundles/<version>-<sequence>.tar
    status/<device-id>.json   what each device last reported

A device serves the channel only if the signature verifies with its trusted key, the channel
has not expired, and its id falls in the active wave: ``sha256(device id) mod 100`` below the
wave's percent. Waves open at fixed offsets from publication, so a rollout widens on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgetune.bundle import MAX_BUNDLE_BYTES, open_bundle
from edgetune.errors import EdgetuneError
from edgetune.files import sha256_file
from edgetune.manifest import BundleRejected, verify_signed
from edgetune.signing import KeyInput, load_private_key

CHANNEL_FILE = "channel.json"
SIGNATURE_FILE = "channel.json.sig"
FORMAT = "edgetune-channel/1"
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DEFAULT_EXPIRES_S = 7 * 24 * 3600
_WAVE = re.compile(r"(\d{1,3})%?(?:@(\d+)s?)?")


class ChannelRejected(BundleRejected):
    """The channel failed a check (signature, expiry, format, bundle hash); not installed."""


@dataclass(frozen=True)
class Wave:
    """`percent` of devices (by id hash) may install from `opens_s` seconds after publication."""

    percent: int
    opens_s: int = 0


@dataclass(frozen=True)
class Channel:
    """A verified channel manifest."""

    sequence: int
    version: str
    sha256: str  # of the bundle file
    model_sha256: str
    bundle: str  # relative to the channel
    size: int
    published: float
    expires: float
    waves: tuple[Wave, ...]

    def active_percent(self, now: float) -> int:
        """The share of the fleet (percent) allowed to install at `now`."""
        opened = [w.percent for w in self.waves if self.published + w.opens_s <= now]
        return max(opened, default=0)

    def admits(self, device_id: str, now: float) -> bool:
        """Whether `device_id` is inside the wave open at `now`."""
        return device_bucket(device_id) < self.active_percent(now)


def device_bucket(device_id: str) -> int:
    """The device's place in 0..99 (sha256 of its id, mod 100): stable across rollouts."""
    return int(hashlib.sha256(device_id.encode()).hexdigest(), 16) % 100


def check_device_id(device_id: str) -> str:
    """Returns `device_id`, or raises EdgetuneError if it cannot name a status file."""
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise EdgetuneError(
            f"device id {device_id!r}: use 1-128 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return device_id


def parse_waves(text: str, name: str = "--waves") -> tuple[Wave, ...]:
    """Parses ``"10,50@600,100@1800"``: percent[@seconds after publication], widening.

    `name` is what error messages call the value (the CLI option or a run parameter).

    Raises:
        EdgetuneError: a malformed item, a percent outside 1..100, or waves that do not widen.
    """
    waves = []
    for item in (part.strip() for part in text.split(",")):
        match = _WAVE.fullmatch(item)
        if not match or not 1 <= int(match[1]) <= 100:
            raise EdgetuneError(
                f"{name} item {item!r}: expected PERCENT[@SECONDS], percent 1..100, "
                "e.g. 10,50@600,100@1800"
            )
        waves.append(Wave(int(match[1]), int(match[2] or 0)))
    for before, after in zip(waves, waves[1:], strict=False):
        if after.percent <= before.percent or after.opens_s <= before.opens_s:
            raise EdgetuneError(f"{name} {text!r}: each wave must be wider and open later")
    return tuple(waves)


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    # Object stores (s3fs) cache listings per instance, and instances are shared: a poll
    # must see what was published since the last one.
    fs, root = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return fs, root


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _put_atomic(fs: fsspec.AbstractFileSystem, data: bytes, target: str) -> None:
    # A temp name then a move: a rename on local disks; a copy (single object PUT) on S3,
    # where readers never see a half-written object either.
    tmp = _join(target.rsplit("/", 1)[0], f".{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp")
    fs.pipe_file(tmp, data)
    try:
        fs.mv(tmp, target)
    except BaseException:
        fs.rm_file(tmp)
        raise


def publish(
    bundle_path: str | os.PathLike[str],
    uri: str,
    signing_key: KeyInput,
    *,
    waves: tuple[Wave, ...] = (Wave(100),),
    expires_s: int = DEFAULT_EXPIRES_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Copies a bundle into the channel at `uri` and points a new signed channel.json at it.

    The bundle is verified with the signing key's public half first, so a channel never
    names a bundle its devices would refuse. The bundle goes up before the manifest does.

    Returns:
        The channel manifest written.

    Raises:
        EdgetuneError: the bundle is not signed by `signing_key`, or a bad argument.
    """
    if expires_s <= 0:
        raise EdgetuneError(f"--expires-s {expires_s}: must be a positive number of seconds")
    key = load_private_key(signing_key)
    verified = open_bundle(bundle_path, key.public_key())
    now = time.time() if now is None else now
    name = f"bundles/{verified.version}-{verified.manifest.sequence}.tar"
    doc = {
        "format": FORMAT,
        "sequence": verified.manifest.sequence,
        "version": verified.version,
        "sha256": sha256_file(bundle_path),
        "model_sha256": verified.model_sha256,
        "bundle": name,
        "size": os.path.getsize(bundle_path),
        "published": now,
        "expires": now + expires_s,
        "waves": [asdict(w) for w in waves],
    }
    fs, root = _fs(uri)
    fs.makedirs(_join(root, "bundles"), exist_ok=True)
    with open(bundle_path, "rb") as f:
        _put_atomic(fs, f.read(), _join(root, name))
    data = (json.dumps(doc, indent=2) + "\n").encode()
    # Signature first: a reader between the two writes sees a mismatch and retries next poll.
    _put_atomic(fs, key.sign(data), _join(root, SIGNATURE_FILE))
    _put_atomic(fs, data, _join(root, CHANNEL_FILE))
    return doc


def read_channel(uri: str, key: Ed25519PublicKey) -> Channel:
    """Reads and verifies the channel at `uri` (signature before parsing; expiry not checked).

    Raises:
        ChannelRejected: missing, badly signed or malformed.
    """
    fs, root = _fs(uri)
    try:
        signature = fs.cat_file(_join(root, SIGNATURE_FILE))
        data = fs.cat_file(_join(root, CHANNEL_FILE))
    except FileNotFoundError as e:
        raise ChannelRejected(f"{uri}: no channel ({e})") from None
    try:
        verify_signed(data, signature, key, f"{uri}/{CHANNEL_FILE}")
    except BundleRejected as e:
        raise ChannelRejected(str(e)) from None
    return _parse(json.loads(data), uri)


def _parse(doc: dict[str, Any], uri: str) -> Channel:
    try:
        if doc["format"] != FORMAT:
            raise ChannelRejected(f"{uri}: format {doc['format']!r}; expected {FORMAT}")
        bundle = str(doc["bundle"])
        if bundle.startswith("/") or ".." in bundle.split("/"):
            raise ChannelRejected(f"{uri}: bundle {bundle!r} must be relative to the channel")
        waves = tuple(Wave(int(w["percent"]), int(w["opens_s"])) for w in doc["waves"])
        return Channel(int(doc["sequence"]), str(doc["version"]), str(doc["sha256"]),
                       str(doc["model_sha256"]), bundle, int(doc["size"]),
                       float(doc["published"]), float(doc["expires"]), waves)  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise ChannelRejected(f"{uri}/{CHANNEL_FILE}: missing or bad field ({e})") from None


def download_bundle(
    uri: str, channel: Channel, target: str | os.PathLike[str], max_bytes: int = MAX_BUNDLE_BYTES
) -> None:
    """Copies the channel's bundle to the local file `target`, checking size and sha256.

    Raises:
        ChannelRejected: too large, or its sha256 is not the one the channel signed.
    """
    if channel.size > max_bytes:
        raise ChannelRejected(f"bundle of {channel.size} bytes exceeds the limit of {max_bytes}")
    fs, root = _fs(uri)
    digest, size = hashlib.sha256(), 0
    with fs.open(_join(root, channel.bundle), "rb") as src, open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise ChannelRejected(f"bundle exceeds the limit of {max_bytes} bytes")
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != channel.sha256:
        raise ChannelRejected(
            f"{channel.bundle}: sha256 {digest.hexdigest()} is not the channel's {channel.sha256}"
        )


def write_status(uri: str, device_id: str, status: dict[str, Any]) -> None:
    """Writes `status/<device-id>.json` under the channel (atomically where the store allows)."""
    fs, root = _fs(uri)
    fs.makedirs(_join(root, "status"), exist_ok=True)
    data = (json.dumps(status, indent=2) + "\n").encode()
    _put_atomic(fs, data, _join(root, "status", f"{check_device_id(device_id)}.json"))


def read_statuses(uri: str) -> list[dict[str, Any]]:
    """Every device's last status under the channel (unreadable files reported as such)."""
    fs, root = _fs(uri)
    statuses = []
    for path in sorted(fs.glob(_join(root, "status", "*.json"))):
        try:
            statuses.append(json.loads(fs.cat_file(path)))
        except (OSError, ValueError) as e:
            statuses.append({"device": path.rsplit("/", 1)[-1], "state": "unreadable",
                             "reason": str(e)})  # fmt: skip
    return statuses
