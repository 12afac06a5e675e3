"""A local HTTP server answering with recorded payloads: the news and macro tests' transport.

Real clients (requests, feedparser over requests, fredapi's urllib) talk to it over TCP, so
status codes, headers and bodies go through the same code paths as with the real services.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

DATA = Path(__file__).parent / "data"


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


@dataclass
class RecordedServer:
    """Routes a path to a queue of answers (the last one repeats); records every request."""

    port: int = 0
    routes: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(
        self,
        path: str,
        body: bytes | str,
        status: int = 200,
        content_type: str = "application/json",
        when: dict[str, str] | None = None,
    ) -> None:
        """Answer GET `path` (with query parameters `when`, if given) with `body`."""
        data = body.encode() if isinstance(body, str) else body
        key = path + "?" + "&".join(f"{k}={v}" for k, v in sorted((when or {}).items()))
        self.routes.setdefault(key, []).append(Answer(status, data, content_type))

    def add_file(
        self,
        path: str,
        name: str,
        status: int = 200,
        content_type: str = "",
        when: dict[str, str] | None = None,
    ) -> None:
        kind = content_type or {
            ".json": "application/json",
            ".xml": "text/xml; charset=utf-8",
            ".csv": "text/csv",
        }.get(Path(name).suffix, "application/octet-stream")
        self.add(path, (DATA / name).read_bytes(), status, kind, when)

    def answer(self, path: str, query: dict[str, list[str]]) -> Answer:
        """The most specific route whose conditions the request meets."""
        best: tuple[int, str] | None = None
        for key in self.routes:
            route_path, _, cond = key.partition("?")
            pairs = [c.split("=", 1) for c in cond.split("&") if c]
            if route_path == path and all(query.get(k) == [v] for k, v in pairs):
                if best is None or len(pairs) > best[0]:
                    best = (len(pairs), key)
        if best is None:
            return Answer(404, b"<error code='404' message='Not Found'/>", "text/xml")
        queue = self.routes[best[1]]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def hits(self, path: str, **query: str) -> int:
        return sum(
            1
            for p, q, _ in self.requests
            if p == path and all(q.get(k) == [v] for k, v in query.items())
        )


def _handler(server_state: RecordedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            server_state.requests.append(
                (parts.path, parse_qs(parts.query), dict(self.headers.items()))
            )
            ans = server_state.answer(parts.path, parse_qs(parts.query))
            self.send_response(ans.status)
            self.send_header("Content-Type", ans.content_type)
            self.send_header("Content-Length", str(len(ans.body)))
            self.end_headers()
            self.wfile.write(ans.body)

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


@pytest.fixture(name="recorded_server")
def recorded_server_fixture() -> Iterator[RecordedServer]:
    """Import `recorded_server_fixture` into a test module to use `recorded_server`."""
    state = RecordedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
