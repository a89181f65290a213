"""Bearer-token files: written readable by their owner only, refused when others can read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgetune import files
from edgetune.errors import EdgetuneError

TOKEN_ENV = "EDGETUNE_AGENT_TOKEN"
# 32 bytes: 256 bits when random, more than any online guessing reaches.
MIN_TOKEN_BYTES = 32


def write_token(path: str | os.PathLike[str], token: str) -> Path:
    """Writes a token file with mode 0600 from the moment it exists (then renamed into place)."""
    with files.atomic_path(path) as tmp:
        tmp.chmod(0o600)  # before the secret is written
        tmp.write_text(token)
    return Path(path)


def read_token(token_file: str | os.PathLike[str] | None, env: str | None = TOKEN_ENV) -> str:
    """The bearer token from `token_file`, else from the environment variable `env`.

    Raises:
        EdgetuneError: the file cannot be read, is readable by group or others, or the
            token is shorter than 32 bytes (UTF-8); or neither source gives a token.
    """
    if token_file:
        path = Path(token_file)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            token = path.read_text().strip()
        except OSError as e:
            raise EdgetuneError(f"{path}: cannot read token file ({e.strerror or e})") from None
        if mode & 0o077:
            raise EdgetuneError(
                f"{path}: token file has mode {mode:04o}; it must be 0600 (chmod 600 {path})"
            )
        return _strong(token, str(path))
    token = os.environ.get(env or "", "").strip()
    if not token:
        raise EdgetuneError(f"no agent token: pass --token-file or set {env}")
    return _strong(token, f"${env}")


def _strong(token: str, where: str) -> str:
    size = len(token.encode())
    if size < MIN_TOKEN_BYTES:
        raise EdgetuneError(
            f"{where}: token of {size} bytes; at least {MIN_TOKEN_BYTES} accepted "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token
