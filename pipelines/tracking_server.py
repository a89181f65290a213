"""An MLflow tracking server for one local run, on loopback, over the run's SQLite store.

`edgetune local-run --tracking-server` serves its store once and its tasks talk to it over
HTTP, as pods talk to a cluster's tracking server, instead of each task opening the SQLite
file itself (which costs every task the SQLAlchemy and Alembic imports and a schema check,
benchmarks/tracking_store.py). Not the default: whole local runs measured no faster with it
(README, MLflow). The server is MLflow's own app (`mlflow.server.fastapi_app`,
what `mlflow server` runs under uvicorn) in a thread of the local-run process: no second
interpreter to start, and it ends with that process however it ends, SIGKILL included.
Artifacts are not proxied: the experiment's artifact location is the folder beside the
database (as without a server), which the tasks on this machine write directly.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from edgetune.errors import EdgetuneError
from edgetune.pipelines.local_runs import environ_kept

START_TIMEOUT_S = 120.0  # importing the server app takes seconds; minutes on a loaded machine


def serves_locally(store_uri: str) -> bool:
    """Whether local-run should serve `store_uri` itself: a SQLite file (not a remote server)."""
    return urlparse(store_uri).scheme == "sqlite"


def artifact_root(store_uri: str) -> str:
    """Where the runs of a SQLite store keep their artifacts: `mlruns/` beside the database."""
    db = Path(urlparse(store_uri).path[1:])  # sqlite:////abs.db -> /abs.db
    return (db.parent / "mlruns").resolve().as_uri()


class TrackingServer:
    """MLflow's server app on a loopback port, in a daemon thread of this process.

    `start` returns at once: the thread imports and opens the store while the caller goes
    on (starting the agents); `wait` returns the URL once the server accepts requests.
    """

    def __init__(self, store_uri: str) -> None:
        """Binds the port now (no other process can take it); serves nothing yet."""
        self.store_uri = store_uri
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server: object | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlflow-server", daemon=True)

    def start(self) -> TrackingServer:
        """Starts the thread (imports, opens the store, serves); returns at once."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            import uvicorn  # before mlflow.server: it then sets up MLflow's host checks
            from mlflow.server import handlers

            # MLflow keeps the served stores in module globals, set once per process (a server
            # process serves one store); a second local run in this process serves its own.
            handlers._tracking_store = handlers._model_registry_store = None
            with _client_uris_kept():
                handlers.initialize_backend_stores(
                    self.store_uri, self.store_uri, artifact_root(self.store_uri)
                )
            from mlflow.server.fastapi_app import app

            config = uvicorn.Config(
                app, log_level="warning", access_log=False, lifespan="off",
                timeout_graceful_shutdown=1,
            )  # fmt: skip
            # In a thread, uvicorn leaves SIGINT/SIGTERM to the local run's own handlers.
            self._server = uvicorn.Server(config)
            self._server.run(sockets=[self._sock])
        except BaseException as e:  # reported by wait()
            self._error = e

    def wait(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """The server's URL, once it accepts requests.

        Raises:
            EdgetuneError: it failed or did not start within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while not getattr(self._server, "started", False):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                why = f": {self._error}" if self._error else f" in {timeout_s:.0f} s"
                raise EdgetuneError(f"the local MLflow tracking server did not start{why}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Stops serving (requests in flight get a second to finish) and frees the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()


@contextlib.contextmanager
def _client_uris_kept() -> Iterator[None]:
    """Undoes what opening the served stores does to this process's MLflow client.

    MLflow's server points the process's tracking and registry URIs at the store it serves,
    in its globals and in MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI, which the pipeline's
    tasks would inherit (and so open the SQLite file themselves again).
    """
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    uris = (tracking._tracking_uri, registry._registry_uri)
    try:
        with environ_kept(("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")):
            yield
    finally:
        tracking._tracking_uri, registry._registry_uri = uris


@contextlib.contextmanager
def serve(store_uri: str, *, timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Serves `store_uri` (tracking and model registry) on 127.0.0.1 while the block runs.

    Yields:
        The server's URL, `http://127.0.0.1:<port>` (a free port the kernel chose).

    Raises:
        EdgetuneError: the server did not start within `timeout_s`.
    """
    server = TrackingServer(store_uri).start()
    try:
        yield server.wait(timeout_s)
    finally:
        server.stop()
