"""Running the agent under uvicorn with its limits, TLS and quiet error logs."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable

import uvicorn

from edgetune.agent.limits import AgentLimits, header_timeout_protocol, quiet_tracebacks
from edgetune.agent.personal import PersonalizeConfig
from edgetune.agent.pull import PullConfig
from edgetune.agent.server import create_app, inherited_socket
from edgetune.agent.tokens import read_token
from edgetune.errors import EdgetuneError
from edgetune.signing import KeyInput, load_public_key


def uvicorn_config(
    app: object,
    limits: AgentLimits,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn settings the agent runs with, every limit set on purpose."""
    if bool(tls_cert) != bool(tls_key):
        raise EdgetuneError("TLS needs both --tls-cert and --tls-key")
    for path in (tls_cert, tls_key):
        if path and not os.path.isfile(path):
            raise EdgetuneError(f"{path}: TLS file not found")
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_timeout_protocol(limits.header_timeout_s),
        timeout_keep_alive=int(max(1, limits.keep_alive_s)),
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        ssl_certfile=os.fspath(tls_cert) if tls_cert else None,
        ssl_keyfile=os.fspath(tls_key) if tls_key else None,
        log_level=log_level,
        access_log=False,  # a flood of requests must not become a flood of log lines
        server_header=False,
    )


def run(
    host: str,
    port: int | None,
    state_dir: str | os.PathLike[str],
    trusted_key: KeyInput,
    token: str,
    fd: int | None = None,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    predict_token_file: str | None = None,
    allow_origins: Iterable[str] = (),
    allow_hosts: Iterable[str] = (),
    limits: AgentLimits | None = None,
    pull: PullConfig | None = None,
    parent_pid: int | None = None,
    personalize: PersonalizeConfig | None = None,
) -> None:
    """Builds the app and serves it on `fd` or `host:port` until interrupted.

    With `parent_pid`, it also stops once that process is gone; `personalize` is the
    device's own gate (`edgetune.agent.personal.PersonalizeConfig`).
    """
    limits = limits or AgentLimits()
    key = load_public_key(trusted_key)
    predict_token = read_token(predict_token_file, env=None) if predict_token_file else None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_tracebacks()
    app = create_app(state_dir, key, token, limits=limits, predict_token=predict_token,
                     allow_origins=allow_origins, allow_hosts=allow_hosts, pull=pull,
                     personalize=personalize)  # fmt: skip
    config = uvicorn_config(app, limits, host=host, port=port or 0, tls_cert=tls_cert,
                            tls_key=tls_key)  # fmt: skip
    server = uvicorn.Server(config)
    if parent_pid:
        _exit_with_parent(server, parent_pid)
    server.run(sockets=[inherited_socket(fd)] if fd is not None else None)


def _exit_with_parent(server: uvicorn.Server, parent_pid: int, period_s: float = 0.5) -> None:
    """Stops `server` once `parent_pid` is no longer this process's parent.

    A local fleet's agents must not outlive a killed `edgetune local-run`.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(period_s)
        logging.getLogger(__name__).info("parent process %d is gone; stopping", parent_pid)
        server.should_exit = True

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
