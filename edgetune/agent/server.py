"""The device agent's HTTP face (FastAPI + uvicorn).

Endpoints (JSON answers; errors as ``{"detail": "<one-line reason>"}``):

- ``PUT /bundle`` (token): body is the raw bundle, spooled to disk. 401 wrong token, 400
  refused bundle, 409 reused version name or a sequence not above the installed one,
  412 `If-Match` does not name the served state, 413 too large, 429 another install is
  running, 507 the disk is full; else ``{version, status, smoke, sequence, model_sha256, etag}``.
- ``POST /rollback`` (token): body is a signed rollback order naming an installed version.
- ``GET /health``: ``{status: ok|degraded|empty, version, previous, smoke, sequence,
  model_sha256, etag, error}``.
- ``POST /predict``: body is a PNG, JPEG or BMP file sent as ``Content-Type: image/...``, or
  a ``multipart/form-data`` form holding exactly one such file (the same byte limit applies
  to the whole form); ``{label, index, scores, version}``. 400 not an image or a malformed
  form, 413 too many pixels or bytes, 415 other content types, 429 busy, 503 no model installed. With a
  personal head, the bundle's int8 extractor and that head answer.
- ``POST /samples?label=<label>`` (token; or header ``X-Label``): body is an image as for
  /predict, kept on the device for personalization; answers counts only. 400 no label or
  not an image, 409 the bundle has no split model, 413 too large, 422 unknown label.
- ``POST /personalize`` (token): trains a head on the samples and installs it only if it
  beats the serving head on the held-out samples by ``min_gain_points``; 422 too few
  samples (the message says how many), 409 no split model, 429 busy.
- ``POST /personalize/rollback`` (token): serves the previous head again.
- ``GET /head-update`` (token): the personal head's weight change against the bundle's
  head, its sample count and the extractor's sha256 (federated averaging); 409 none yet.

No endpoint returns a stored sample.

``/predict`` and ``/health`` need no token unless ``--predict-token-file`` is given: they
change nothing, and the agent binds to loopback unless told otherwise. Browsers' cross-site
requests and foreign Host names are refused (see `limits.SameOriginOnly`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from edgetune import __version__
from edgetune.agent.forms import FORM_TYPE, FormImageType, FormRejected, image_from_form
from edgetune.agent.limits import AgentLimits, ImageTooLarge, SameOriginOnly, check_image_size
from edgetune.agent.personal import NoPersonalHead, NoSplitModel, PersonalizeConfig, TooFewSamples
from edgetune.agent.pull import PullConfig, Puller
from edgetune.agent.samples import SampleStore, SampleTooLarge
from edgetune.agent.service import Agent, NoModel, PreconditionFailed, UnknownLabel
from edgetune.agent.store import NoPreviousVersion, VersionConflict
from edgetune.agent.tokens import read_token
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import ImageDecodeError
from edgetune.signing import KeyInput, load_public_key

DEFAULT_HOST = "127.0.0.1"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "application/octet-stream")
MAX_ORDER_BYTES = 64 * 1024
# A full disk, a quota, a file size limit: the device lacks room, the request was fine.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

log = logging.getLogger(__name__)


def create_app(
    state_dir: str | os.PathLike[str],
    trusted_key: Ed25519PublicKey | KeyInput,
    token: str,
    *,
    limits: AgentLimits | None = None,
    predict_token: str | None = None,
    allow_origins: Iterable[str] = (),
    allow_hosts: Iterable[str] = (),
    pull: PullConfig | None = None,
    personalize: PersonalizeConfig | None = None,
) -> FastAPI:
    """Builds the agent app and restores the version `state_dir` points at.

    Args:
        state_dir: where installed versions and the served-version pointer live.
        trusted_key: the Ed25519 public key bundles must be signed with, or its PEM path.
        token: the bearer token pushes and rollbacks must carry.
        limits: sizes, pixels, deadlines and concurrency (defaults: `AgentLimits()`).
        predict_token: when given, /predict needs this bearer token too.
        allow_origins: browser origins allowed to call the agent (none by default).
        allow_hosts: Host names accepted besides IP addresses and localhost.
        pull: when given, a background thread follows this signed channel while the app runs.
        personalize: the device's own gate and training settings (defaults:
            `PersonalizeConfig()`); the sample store's limits are in `limits`.

    Returns:
        The FastAPI app, ready for uvicorn.
    """
    if not token:
        raise EdgetuneError("the agent token is empty")
    limits = limits or AgentLimits()
    key = trusted_key if isinstance(trusted_key, Ed25519PublicKey) else load_public_key(trusted_key)
    samples = SampleStore(state_dir, limits.max_samples, limits.max_sample_store_bytes)
    agent = Agent(state_dir, key, limits.max_bundle_bytes, samples=samples, personalize=personalize)
    agent.restore()
    app = FastAPI(title="edgetune agent", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=_pull_lifespan(agent, pull, limits))  # fmt: skip
    app.add_middleware(SameOriginOnly, allow_origins=allow_origins, allow_hosts=allow_hosts)
    app.state.agent = agent
    push_auth = _bearer(token)
    predict_auth = _bearer(predict_token) if predict_token else None
    install_lock = asyncio.Lock()  # one install or rollback at a time; others get 429 at once
    predict_slots = asyncio.Semaphore(limits.predict_concurrency)

    @app.put("/bundle")
    async def put_bundle(request: Request) -> dict[str, Any]:
        push_auth(request)
        async with _exclusive(install_lock, "another install is in progress"):
            spooled = await _spool(request, agent.store.spool, limits)
            try:
                return await _change(agent.install, spooled, request.headers.get("if-match"))
            finally:
                spooled.unlink(missing_ok=True)

    @app.post("/rollback")
    async def rollback(request: Request) -> dict[str, Any]:
        push_auth(request)
        async with _exclusive(install_lock, "another install is in progress"):
            order = await _read_body(request, MAX_ORDER_BYTES, limits.body_timeout_s)
            return await _change(agent.rollback, order, request.headers.get("if-match"))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return agent.health()

    @app.post("/samples", status_code=201)
    async def add_sample(request: Request, label: str = "") -> dict[str, Any]:
        push_auth(request)
        label = label or request.headers.get("x-label", "")
        if not label:
            raise HTTPException(400, "no label: give ?label=<one of the model's labels> or X-Label")
        _require_image_type(request)
        data = await _read_body(request, limits.max_image_bytes, limits.body_timeout_s)
        try:
            data = _image_of(request, data)
        except FormImageType as e:
            raise HTTPException(415, str(e)) from None
        except FormRejected as e:
            raise HTTPException(400, str(e)) from None
        return await _personal(agent.add_sample, data, label, limits.max_pixels)

    @app.post("/personalize")
    async def personalize(request: Request) -> dict[str, Any]:
        push_auth(request)
        async with _exclusive(install_lock, "an install or personalization is in progress"):
            return await _personal(agent.personalize)

    @app.post("/personalize/rollback")
    async def rollback_head(request: Request) -> dict[str, Any]:
        push_auth(request)
        async with _exclusive(install_lock, "an install or personalization is in progress"):
            return await _personal(agent.rollback_head)

    @app.get("/head-update")
    async def head_update(request: Request) -> dict[str, Any]:
        push_auth(request)
        return await _personal(agent.head_update)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        if predict_auth:
            predict_auth(request)
        _require_image_type(request)
        if predict_slots.locked():
            raise HTTPException(429, "busy: too many predictions at once; retry shortly")
        async with predict_slots:
            data = await _read_body(request, limits.max_image_bytes, limits.body_timeout_s)
            try:
                data = _image_of(request, data)
                check_image_size(data, limits.max_pixels)
                return await run_in_threadpool(agent.predict, data, limits.max_pixels)
            except ImageTooLarge as e:
                raise HTTPException(413, str(e)) from None
            except NoModel as e:
                raise HTTPException(503, str(e)) from None
            except ImageDecodeError as e:
                raise HTTPException(413 if e.kind == "too many pixels" else 400, str(e)) from None
            except FormImageType as e:
                raise HTTPException(415, str(e)) from None
            except FormRejected as e:
                raise HTTPException(400, str(e)) from None

    return app


async def _personal(method, *args: Any) -> dict[str, Any]:
    """Runs a personalization call in a worker thread and maps its refusals to statuses."""
    try:
        return await run_in_threadpool(method, *args)
    except NoModel as e:
        raise HTTPException(503, str(e)) from None
    except (NoSplitModel, NoPersonalHead) as e:
        raise HTTPException(409, str(e)) from None
    except (UnknownLabel, TooFewSamples) as e:
        raise HTTPException(422, str(e)) from None
    except (ImageTooLarge, SampleTooLarge) as e:
        raise HTTPException(413, str(e)) from None
    except ImageDecodeError as e:
        raise HTTPException(413 if e.kind == "too many pixels" else 400, str(e)) from None
    except OSError as e:
        if e.errno in _NO_ROOM:
            raise HTTPException(507, f"no room on the device: {e.strerror}") from None
        raise


def _pull_lifespan(agent: Agent, pull: PullConfig | None, limits: AgentLimits):
    """Runs the pull loop between the server's startup and shutdown (nothing without `pull`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        puller = Puller(agent, pull, limits.max_bundle_bytes) if pull else None
        if puller:
            puller.start()
        try:
            yield
        finally:
            if puller:
                await run_in_threadpool(puller.stop)

    return lifespan


def _bearer(token: str):
    expected = f"Bearer {token}".encode()

    def authorize(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        # Constant-time comparison: the answer time must not reveal how much of a guess matched.
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    return authorize


class _exclusive:
    """`async with`: holds `lock`, or answers 429 at once when it is taken."""

    def __init__(self, lock: asyncio.Lock, busy: str) -> None:
        self.lock, self.busy = lock, busy

    async def __aenter__(self) -> None:
        if self.lock.locked():
            raise HTTPException(429, self.busy)
        await self.lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()


async def _change(method, payload, if_match: str | None) -> dict[str, Any]:
    """Runs an install or rollback in a worker thread and maps its refusals to statuses."""
    try:
        return await run_in_threadpool(method, payload, if_match)
    except PreconditionFailed as e:
        raise HTTPException(412, str(e)) from None
    except (VersionConflict, NoPreviousVersion) as e:
        raise HTTPException(409, str(e)) from None
    except EdgetuneError as e:
        raise HTTPException(400, str(e)) from None
    except OSError as e:
        if e.errno in _NO_ROOM:
            raise HTTPException(507, f"no room on the device: {e.strerror}") from None
        raise


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _require_image_type(request: Request) -> None:
    kind = _content_type(request)
    if kind not in (*IMAGE_TYPES, FORM_TYPE):
        raise HTTPException(
            415, f"Content-Type {kind or 'missing'!r}; send the image file as the body with "
            "Content-Type image/png, image/jpeg or image/bmp, or as the one file of a "
            "multipart/form-data form",
        )  # fmt: skip


def _image_of(request: Request, body: bytes) -> bytes:
    """The image bytes: the body itself, or the one file of a multipart form."""
    if _content_type(request) == FORM_TYPE:
        return image_from_form(body, request.headers["content-type"])
    return body


def _declared_too_large(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {limit}")


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refused with 413 past `limit` and 408 past `timeout_s`."""
    _declared_too_large(request, limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"body not received within {timeout_s:g} s") from None
    return b"".join(chunks)


async def _spool(request: Request, spool_dir: Path, limits: AgentLimits) -> Path:
    """Streams the body into a file under `spool_dir` (413 past the cap, 408, 507)."""
    _declared_too_large(request, limits.max_bundle_bytes)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar", dir=spool_dir)
    path, size = Path(name), 0
    try:
        with os.fdopen(fd, "wb") as out:
            async with asyncio.timeout(limits.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_bundle_bytes:
                        raise HTTPException(
                            413, f"body exceeds the limit of {limits.max_bundle_bytes} bytes"
                        )
                    out.write(chunk)
    except TimeoutError:
        path.unlink(missing_ok=True)
        raise HTTPException(408, f"body not received within {limits.body_timeout_s:g} s") from None
    except OSError as e:
        path.unlink(missing_ok=True)
        if e.errno in _NO_ROOM:
            raise HTTPException(507, f"no room on the device: {e.strerror}") from None
        raise
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def serve(
    host: str = DEFAULT_HOST,
    port: int | None = 8470,
    state_dir: str | os.PathLike[str] = ".edgetune/agent",
    trusted_key: KeyInput = ".edgetune/keys/signing.pub",
    token_file: str | os.PathLike[str] | None = None,
    fd: int | None = None,
    **options: Any,
) -> None:
    """Runs the agent until interrupted (`edgetune agent serve`).

    Args:
        host: interface to bind; loopback by default, so only this device can call it.
        port: TCP port (ignored when `fd` is given).
        state_dir: where installed versions live; the served version survives restarts.
        trusted_key: PEM file of the Ed25519 public key bundles must be signed with.
        token_file: file holding the bearer token; default $EDGETUNE_AGENT_TOKEN.
        fd: a listening socket inherited from the parent, used instead of binding `port`.
        **options: see `edgetune.agent.runner.run` (limits, TLS, origins, predict token).

    Raises:
        EdgetuneError: no or weak token, or the trusted key cannot be loaded.
    """
    from edgetune.agent.runner import run

    run(host, port, state_dir, trusted_key, read_token(token_file), fd, **options)


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a parent passed down (its family detected from the descriptor)."""
    return socket.socket(fileno=fd)
