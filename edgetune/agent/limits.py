"""The agent's limits, set deliberately: sizes, pixels, time, concurrency, and who may call.

Everything here is enforced before the expensive step it protects: a body's size before it
is read, an image's pixel count (from its header) before it is decoded, a request's headers
within a deadline, and a browser's cross-site request before it reaches a route.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import h11
from PIL import Image, UnidentifiedImageError
from uvicorn.protocols.http.h11_impl import H11Protocol

from edgetune.errors import EdgetuneError


@dataclass(frozen=True)
class AgentLimits:
    """How much one request, and all of them together, may cost the device.

    Attributes:
        max_bundle_bytes: largest accepted push (spooled to disk, not held in memory).
        max_image_bytes: largest accepted /predict body.
        max_pixels: largest decoded image (width x height), checked from the header.
        predict_concurrency: /predict requests decoded at once; more get 429.
        body_timeout_s: a request body must arrive within this time (else 408).
        header_timeout_s: a connection must send complete request headers within this
            time after it opens or after its previous response (else it is closed).
        keep_alive_s: idle keep-alive connections are closed after this.
        max_connections: connections served at once (uvicorn's limit_concurrency; more get 503).
        max_header_bytes: the most h11 buffers for a request's headers.
        max_samples: labelled samples kept for personalization (oldest dropped first).
        max_sample_store_bytes: bytes those samples may take on disk (oldest dropped first).
    """

    max_bundle_bytes: int = 256 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    predict_concurrency: int = 2
    body_timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 64
    max_header_bytes: int = 16 * 1024
    max_samples: int = 2000
    max_sample_store_bytes: int = 64 * 1024 * 1024


class ImageTooLarge(EdgetuneError):
    """An image whose decoded size is over the limit (known from its header)."""


def check_image_size(data: bytes, max_pixels: int) -> None:
    """Refuses an image whose header declares more than `max_pixels`, without decoding it.

    `Image.open` reads only the header; Pillow's own decompression-bomb checks are turned
    into ImageTooLarge too, so no oversized image reaches the decoder.

    Raises:
        ImageTooLarge: declared width x height over `max_pixels`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(BytesIO(data)) as image:
                width, height = image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageTooLarge(f"image refused before decoding: {e}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return  # not an image at all: the decoder says so in its own words (400)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image of {width}x{height} pixels; at most {max_pixels} pixels accepted"
        )


def header_timeout_protocol(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections that do not send complete headers in time.

    uvicorn's keep-alive timer is reset by every received byte, so a client sending one
    header byte a second (slowloris) would hold its connection forever.
    """

    class HeaderDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(timeout_s, self._expire)

        def _expire(self) -> None:
            # Still waiting for (the rest of) a request's headers: give up on this client.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol


class OneLineErrors(logging.Filter):
    """Logs an exception as one line (type and message), never as a traceback.

    A flood of broken connections must not write a traceback each (hundreds of MB of log
    on a device with little flash).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Folds the record's exception into its message as one line; never drops a record."""
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def quiet_tracebacks(names: Iterable[str] = ("uvicorn.error", "uvicorn", "asyncio")) -> None:
    """Installs OneLineErrors on the loggers a server's connection errors go to."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineErrors) for f in logger.filters):
            logger.addFilter(OneLineErrors())


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class SameOriginOnly:
    """ASGI middleware refusing browser cross-site requests and foreign Host names.

    - `Origin` (sent by browsers on cross-origin requests, and on any POST) must be one of
      `allow_origins`; `Sec-Fetch-Site: cross-site` is refused likewise. Tools such as
      curl and httpx send neither.
    - `Host` must be an IP address, `localhost`, or one of `allow_hosts`: a web page that
      points its own domain at the device (DNS rebinding) sends its domain as Host.
    """

    def __init__(
        self, app: ASGIApp, allow_origins: Iterable[str] = (), allow_hosts: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.allow_origins = {o.rstrip("/") for o in allow_origins}
        self.allow_hosts = {"localhost", *(h.lower() for h in allow_hosts)}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry: answers 403 to an HTTP request from a foreign origin or host, passes on the rest."""
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            problem = self._problem(headers)
            if problem:
                await _refuse(send, 403, problem)
                return
        await self.app(scope, receive, send)

    def _problem(self, headers: dict[str, str]) -> str | None:
        origin = headers.get("origin")
        allowed = origin is not None and origin.rstrip("/") in self.allow_origins
        if origin is not None and not allowed:
            return f"cross-origin request from {origin[:100]!r} refused; see --allow-origin"
        if headers.get("sec-fetch-site") in ("cross-site", "same-site") and not allowed:
            return "cross-site request refused; see --allow-origin"
        host = _hostname(headers.get("host", ""))
        if not (host in self.allow_hosts or _is_ip(host)):
            return f"Host {host[:100]!r} refused; see --allow-host"
        return None


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8470
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
