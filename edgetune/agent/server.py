"""The device agent's HTTP face (FastAPI + uvicorn).

Endpoints (JSON answers; errors as ``{"detail": "<one-line reason>"}``):

- ``PUT /bundle`` (token): body is the raw bundle. 401 wrong token, 400 refused bundle,
  409 version installed with other contents, 413 too large; else ``{version, status, smoke}``.
- ``POST /rollback`` (token): serve the previous version again; 409 when there is none.
- ``GET /health``: ``{status: ok|degraded|empty, version, previous, smoke, model_sha256}``.
- ``POST /predict``: body is a PNG, JPEG or BMP file; ``{label, index, scores, version}``.
  400 for an image that does not decode, 503 when no model is installed.

``/predict`` and ``/health`` need no token: they change nothing, and the agent binds to
loopback unless told otherwise, so the application beside it on the device can call it
without holding the deploy secret. Whatever can change the served model needs the token.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from edgetune import __version__
from edgetune.agent.service import Agent, NoModel
from edgetune.agent.store import VersionConflict
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import ImageDecodeError
from edgetune.signing import KeyInput, load_public_key

TOKEN_ENV = "EDGETUNE_AGENT_TOKEN"
DEFAULT_HOST = "127.0.0.1"
# A bundle is held in memory while it is verified; the cap bounds that memory.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024


def create_app(
    state_dir: str | os.PathLike[str],
    trusted_key: Ed25519PublicKey | KeyInput,
    token: str,
) -> FastAPI:
    """Builds the agent app and restores the version `state_dir` points at.

    Args:
        state_dir: where installed versions and the served-version pointer live.
        trusted_key: the Ed25519 public key bundles must be signed with, or its PEM path.
        token: the bearer token pushes and rollbacks must carry.

    Returns:
        The FastAPI app, ready for uvicorn.
    """
    if not token:
        raise EdgetuneError("the agent token is empty")
    key = trusted_key if isinstance(trusted_key, Ed25519PublicKey) else load_public_key(trusted_key)
    agent = Agent(state_dir, key)
    agent.restore()
    app = FastAPI(title="edgetune agent", version=__version__)
    app.state.agent = agent
    expected_auth = f"Bearer {token}".encode()

    def authorize(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        # Constant-time comparison: the answer time must not reveal how much of a guess matched.
        if not hmac.compare_digest(given, expected_auth):
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    @app.put("/bundle")
    async def put_bundle(request: Request) -> dict[str, Any]:
        authorize(request)
        data = await _read_body(request, MAX_BUNDLE_BYTES)
        try:
            return await run_in_threadpool(agent.install, data)
        except VersionConflict as e:
            raise HTTPException(409, str(e)) from None
        except EdgetuneError as e:
            raise HTTPException(400, str(e)) from None

    @app.post("/rollback")
    async def rollback(request: Request) -> dict[str, Any]:
        authorize(request)
        try:
            return await run_in_threadpool(agent.rollback)
        except EdgetuneError as e:  # NoPreviousVersion, or a previous that no longer loads
            raise HTTPException(409, str(e)) from None

    @app.get("/health")
    def health() -> dict[str, Any]:
        return agent.health()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        data = await _read_body(request, MAX_IMAGE_BYTES)
        try:
            return await run_in_threadpool(agent.predict, data)
        except NoModel as e:
            raise HTTPException(503, str(e)) from None
        except ImageDecodeError as e:
            raise HTTPException(400, str(e)) from None

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def read_token(token_file: str | os.PathLike[str] | None) -> str:
    """The bearer token from `token_file`, else from $EDGETUNE_AGENT_TOKEN.

    Raises:
        EdgetuneError: the file cannot be read or is empty, or neither source gives a token.
    """
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise EdgetuneError(
                f"{token_file}: cannot read token file ({e.strerror or e})"
            ) from None
        if not token:
            raise EdgetuneError(f"{token_file}: token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise EdgetuneError(f"no agent token: pass --token-file or set {TOKEN_ENV}")
    return token


def serve(
    host: str = DEFAULT_HOST,
    port: int | None = 8470,
    state_dir: str | os.PathLike[str] = ".edgetune/agent",
    trusted_key: KeyInput = ".edgetune/keys/signing.pub",
    token_file: str | os.PathLike[str] | None = None,
    fd: int | None = None,
) -> None:
    """Runs the agent until interrupted (`edgetune agent serve`).

    Args:
        host: interface to bind; loopback by default, so only this device can call it.
        port: TCP port (ignored when `fd` is given).
        state_dir: where installed versions live; the served version survives restarts.
        trusted_key: PEM file of the Ed25519 public key bundles must be signed with.
        token_file: file holding the bearer token; default $EDGETUNE_AGENT_TOKEN.
        fd: a listening socket inherited from the parent, used instead of binding `port`.

    Raises:
        EdgetuneError: no token, or the trusted key cannot be loaded.
    """
    token = read_token(token_file)
    key = load_public_key(trusted_key)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(state_dir, key, token)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port or 0, log_level="info"))
    # socket(fileno=...) detects the inherited socket's family (uvicorn's own `fd` assumes AF_UNIX).
    server.run(sockets=[socket.socket(fileno=fd)] if fd is not None else None)
