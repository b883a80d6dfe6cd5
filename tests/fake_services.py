"""Local HTTP servers that speak just enough of Cohere's and Braintrust's wire protocols for the real SDKs.

Each binds 127.0.0.1 on a free port, records every request (method, path, query, headers, body), and is started
and stopped by the tests' fixtures (``conftest.py``). Behaviour under failure is scripted per test: status codes
to answer before succeeding, a request that is applied and then answered with an error, a reply that comes too
late, a malformed body.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 whose replies come from ``route``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                parts = urlsplit(self.path)
                request = Request(
                    self.command, parts.path, parse_qs(parts.query), dict(self.headers), self.rfile.read(length)
                )
                with server.lock:
                    server.requests.append(request)
                    reply = server.route(request)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_port}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def route(self, request: Request) -> Reply:
        raise NotImplementedError

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def calls(self, method: str, pattern: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]


class SilentServer:
    """Accepts TCP connections and never answers: a server that is up but hangs."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._socket.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self._held.append(connection)

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        for connection in self._held:
            connection.close()
        self._socket.close()


def overlap(query: str, document: str) -> float:
    """A deterministic stand-in for a relevance model: the share of the document's words found in the query."""
    words = set(re.findall(r"\w+", query.lower()))
    doc = re.findall(r"\w+", document.lower())
    return sum(word in words for word in doc) / max(len(doc), 1)


NOW = "2025-01-01T00:00:00Z"


class FakeCohere(FakeServer):
    """Cohere's ``/v2/rerank``, ``/v1/datasets`` and ``/v1/finetuning/finetuned-models``.

    Scripts (set by a test before the call):
        rerank_errors: statuses to answer ``/v2/rerank`` with, one per request, before answering normally.
        rerank_malformed: ``"index"`` (an out-of-range index), ``"nan"`` (a NaN score) or ``"short"`` (a
            document missing) for every rerank answer.
        create_errors: per create request, ``(status or "timeout", applied)``: answer with that status (or
            answer after ``slow_reply_s``) — having created the fine-tune first when ``applied``.
        dataset_status: the validation status datasets reach (``validated`` or ``failed``).
        statuses: the fine-tune statuses successive GETs return (the last one repeats).
        retired: answer fine-tuning calls the way Cohere answers accounts without fine-tuning.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rerank_errors: list[int] = []
        self.rerank_malformed: str | None = None
        self.create_errors: list[tuple[int | str, bool]] = []
        self.dataset_status = "validated"
        self.statuses = ["STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_READY"]
        self.retired = False
        self.slow_reply_s = 3.0
        self.datasets: dict[str, dict[str, Any]] = {}
        self.finetunes: dict[str, dict[str, Any]] = {}
        self._gets: dict[str, int] = {}
        self._ids = itertools.count(1)

    def route(self, request: Request) -> Reply:
        path = request.path
        if request.method == "POST" and path == "/v2/rerank":
            return self._rerank(request.json())
        if request.method == "POST" and path == "/v1/datasets":
            return self._create_dataset(request)
        if request.method == "GET" and path.startswith("/v1/datasets/"):
            dataset = self.datasets.get(path.rsplit("/", 1)[1])
            return Reply(200, {"dataset": dataset}) if dataset else Reply(404, {"message": "dataset not found"})
        if path == "/v1/finetuning/finetuned-models":
            if self.retired:
                return Reply(
                    404, {"message": "Fine-tuning is no longer available: it was retired on 2025-09-15 (sunset)."}
                )
            if request.method == "GET":
                return Reply(
                    200, {"finetuned_models": list(self.finetunes.values()), "total_size": len(self.finetunes)}
                )
            return self._create_finetune(request.json())
        if request.method == "GET" and path.startswith("/v1/finetuning/finetuned-models/"):
            return self._get_finetune(path.rsplit("/", 1)[1])
        return Reply(404, {"message": f"no route {request.method} {path}"})

    def _rerank(self, body: dict[str, Any]) -> Reply:
        if self.rerank_errors:
            status = self.rerank_errors.pop(0)
            return Reply(status, {"message": "too many requests"}, headers={"retry-after-ms": "10"})
        documents = body["documents"]
        scored = sorted(
            ((index, overlap(body["query"], document)) for index, document in enumerate(documents)),
            key=lambda pair: (-pair[1], pair[0]),
        )
        results: list[dict[str, Any]] = [{"index": index, "relevance_score": score} for index, score in scored]
        if self.rerank_malformed == "index":
            results[0]["index"] = len(documents) + 3
        elif self.rerank_malformed == "nan":
            return Reply(200, b'{"id": "r", "results": [{"index": 0, "relevance_score": NaN}]}')
        elif self.rerank_malformed == "short":
            results = results[:-1]
        top_n = body.get("top_n")
        return Reply(200, {"id": f"rerank-{next(self._ids)}", "results": results[:top_n] if top_n else results})

    def _create_dataset(self, request: Request) -> Reply:
        if self.retired:
            return Reply(
                400, {"message": "reranker-finetune-input datasets are no longer supported: fine-tuning was retired"}
            )
        dataset_id = f"ds-{next(self._ids)}"
        self.datasets[dataset_id] = {
            "id": dataset_id,
            "name": request.query["name"][0],
            "created_at": NOW,
            "updated_at": NOW,
            "dataset_type": request.query["type"][0],
            "validation_status": self.dataset_status,
            "validation_error": "row 3: hard_negatives must be a list" if self.dataset_status == "failed" else None,
            "items": request.body.count(b'"relevant_passages"'),
        }
        return Reply(200, {"id": dataset_id})

    def _create_finetune(self, body: dict[str, Any]) -> Reply:
        failure, applied = self.create_errors.pop(0) if self.create_errors else (None, True)
        finetune = None
        if applied:
            finetune_id = f"ft-remote-{next(self._ids)}"
            finetune = {
                "id": finetune_id,
                "name": body["name"],
                "settings": body["settings"],
                "status": "STATUS_QUEUED",
                "created_at": NOW,
            }
            self.finetunes[finetune_id] = finetune
        if failure == "timeout":
            return Reply(200, {"finetuned_model": finetune}, delay=self.slow_reply_s)
        if failure is not None:
            return Reply(int(failure), {"message": "service unavailable"})
        return Reply(200, {"finetuned_model": finetune})

    def _get_finetune(self, finetune_id: str) -> Reply:
        finetune = self.finetunes.get(finetune_id)
        if finetune is None:
            return Reply(404, {"message": f"finetuned model {finetune_id} not found"})
        count = self._gets.get(finetune_id, 0)
        self._gets[finetune_id] = count + 1
        finetune["status"] = self.statuses[min(count, len(self.statuses) - 1)]
        return Reply(200, {"finetuned_model": finetune})


class FakeBraintrust(FakeServer):
    """Braintrust's login, projects, experiments, datasets and ``/logs3``.

    ``rows`` holds every row received through ``/logs3``; ``experiments`` every experiment created; set
    ``dataset_events`` to what a dataset's fetch returns.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.dataset_events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def route(self, request: Request) -> Reply:
        path = request.path
        if path == "/api/apikey/login":
            organisation = {"id": "org-1", "name": "acme", "api_url": self.url, "proxy_url": self.url}
            return Reply(200, {"org_info": [{**organisation, "git_metadata": None, "is_universal_api": False}]})
        if path == "/v1/project":
            return Reply(200, {"id": "project-1", "name": request.json()["name"]})
        if path == "/v1/experiment":
            body = request.json()
            experiment = {"id": f"experiment-{next(self._ids)}", "project_id": body["project_id"], **body}
            self.experiments.append(experiment)
            return Reply(200, experiment)
        if path == "/v1/dataset":
            body = request.json()
            return Reply(200, {"id": "dataset-1", "name": body.get("name"), "project_id": body.get("project_id")})
        if re.fullmatch(r"/v1/dataset/[^/]+/fetch", path):
            return Reply(200, {"events": self.dataset_events, "cursor": None})
        if path == "/logs3":
            self.rows.extend(request.json()["rows"])
            return Reply(200, {})
        return Reply(200, {})
