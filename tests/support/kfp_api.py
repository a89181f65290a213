"""A fake Kubeflow Pipelines API server (v2beta1) on loopback: the endpoints the kfp client calls
to upload a pipeline or a version, find or create an experiment and create a run.

It keeps what it was sent (`requests`, `pipelines`, `versions`, `runs`) for the tests to check,
and answers 401 to a request without the expected bearer token, when one is set.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"


@dataclass
class FakeKfp:
    """State of the fake server; `url` once started."""

    token: str = ""
    url: str = ""
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    uploads: list[bytes] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.requests]


def _new_id() -> str:
    return str(uuid.uuid4())


def _display_name_filter(query: dict[str, list[str]]) -> str | None:
    raw = query.get("filter", [""])[0]
    if not raw:
        return None
    for predicate in json.loads(raw).get("predicates", []):
        if predicate.get("key") in ("display_name", "name"):
            return predicate.get("stringValue") or predicate.get("string_value")
    return None


class _Handler(BaseHTTPRequestHandler):
    state: FakeKfp

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.state.token and self.headers.get("Authorization") != f"Bearer {self.state.token}":
            self._reply(401, {"error": "Unauthenticated: invalid bearer token", "code": 16})
            return False
        return True

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.state.requests.append(("GET", url.path, query))
        if not self._authorised():
            return
        parts = url.path.removeprefix(API).strip("/").split("/")
        if parts == ["healthz"]:
            self._reply(200, {"multi_user": False, "pipeline_store": "database"})
        elif parts == ["pipelines"]:
            name = _display_name_filter(query)
            found = [p for p in self.state.pipelines.values() if name in (None, p["display_name"])]
            self._reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
        elif len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "versions":
            versions = list(reversed(self.state.versions.get(parts[1], [])))  # newest first
            size = int(query.get("page_size", ["100"])[0])
            self._reply(200, {"pipeline_versions": versions[:size], "total_size": len(versions)})
        elif parts == ["experiments"]:
            name = _display_name_filter(query)
            found = [e for e in self.state.experiments.values() if e["display_name"] == name]
            self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
        else:
            self._reply(404, {"error": f"no route {url.path}", "code": 5})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.state.requests.append(("POST", url.path, query))
        body = self._body()
        if not self._authorised():
            return
        parts = url.path.removeprefix(API).strip("/").split("/")
        if parts == ["pipelines", "upload"]:
            self._reply(200, self._upload(body, query, pipeline_id=None))
        elif parts == ["pipelines", "upload_version"]:
            self._reply(200, self._upload(body, query, pipeline_id=query["pipelineid"][0]))
        elif parts == ["experiments"]:
            experiment = {**json.loads(body), "experiment_id": _new_id()}
            self.state.experiments[experiment["experiment_id"]] = experiment
            self._reply(200, experiment)
        elif parts == ["runs"]:
            run = {**json.loads(body), "run_id": _new_id(), "state": "PENDING"}
            self.state.runs.append(run)
            self._reply(200, run)
        else:
            self._reply(404, {"error": f"no route {url.path}", "code": 5})

    def _upload(
        self, body: bytes, query: dict[str, list[str]], pipeline_id: str | None
    ) -> dict[str, Any]:
        self.state.uploads.append(body)
        name = query.get("name", [""])[0]
        if pipeline_id is None:
            pipeline_id = _new_id()
            self.state.pipelines[pipeline_id] = {
                "pipeline_id": pipeline_id,
                "display_name": name,
                "namespace": query.get("namespace", [""])[0],
            }
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": _new_id(),
            "display_name": name,
            "description": query.get("description", [""])[0],
        }
        self.state.versions.setdefault(pipeline_id, []).append(version)
        if version["display_name"] == self.state.pipelines[pipeline_id]["display_name"]:
            return self.state.pipelines[pipeline_id]
        return version


class running_kfp:
    """Context manager: a FakeKfp served on 127.0.0.1 (a free port) in a thread, then stopped."""

    def __init__(self, token: str = "") -> None:
        self.state = FakeKfp(token=token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKfp:
        self.thread.start()
        self.state.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.state

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
