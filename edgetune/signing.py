"""Ed25519 keys for bundles: the pipeline signs with the private key, devices trust the public one."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgetune import files
from edgetune.errors import EdgetuneError

PRIVATE_KEY_FILE = "signing.key"
PUBLIC_KEY_FILE = "signing.pub"

KeyInput = str | os.PathLike[str]


def generate_keypair(directory: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """Makes an Ed25519 key pair: `signing.key` (PEM, mode 0600) and `signing.pub` (PEM).

    Keygen is idempotent: when both files already exist and `force` is false, the existing
    pair is checked to match and its paths are returned, so nothing a fleet already trusts
    is replaced by accident. When only one of the two exists, it refuses (an orphaned half
    of a pair is ambiguous) unless `force` is given.

    Args:
        directory: where the two files go (created if missing).
        force: replace any existing pair with a new one.

    Returns:
        (private key path, public key path).

    Raises:
        EdgetuneError: one file of a pair exists, or an existing pair does not match.
    """
    directory = Path(directory)
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    present = [p for p in (private_path, public_path) if p.exists()]
    if present and not force:
        if len(present) == 1:
            raise EdgetuneError(
                f"{present[0]} exists without its pair; pass --force to make a new key pair"
            )
        _check_pair(private_path, public_path)
        return private_path, public_path
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # 0600 before the secret is written: it is never readable by others, not even briefly.
    with files.atomic_path(private_path) as tmp:
        tmp.chmod(0o600)
        tmp.write_bytes(private_pem)
    with files.atomic_path(public_path) as tmp:
        tmp.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: KeyInput) -> Ed25519PrivateKey:
    """Reads an unencrypted Ed25519 private key (PEM); EdgetuneError names the file if not."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise EdgetuneError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgetuneError(f"{path}: a {type(key).__name__}; an Ed25519 key is required")
    return key


def load_public_key(path: KeyInput) -> Ed25519PublicKey:
    """Reads an Ed25519 public key (PEM); EdgetuneError names the file if it cannot."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise EdgetuneError(f"{path}: not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EdgetuneError(f"{path}: a {type(key).__name__}; an Ed25519 key is required")
    return key


def _read_key_file(path: KeyInput) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise EdgetuneError(f"{path}: cannot read key file ({e.strerror or e})") from None


def _check_pair(private_path: Path, public_path: Path) -> None:
    private = load_private_key(private_path).public_key().public_bytes_raw()
    if private != load_public_key(public_path).public_bytes_raw():
        raise EdgetuneError(
            f"{public_path} is not the public half of {private_path}; pass --force to replace both"
        )
