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
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.routes.setdefault(path, []).append(Answer(status, data, content_type))

    def add_file(self, path: str, name: str, status: int = 200, content_type: str = "") -> None:
        kind = content_type or {
            ".json": "application/json",
            ".xml": "text/xml; charset=utf-8",
            ".csv": "text/csv",
        }.get(Path(name).suffix, "application/octet-stream")
        self.add(path, (DATA / name).read_bytes(), status, kind)

    def answer(self, path: str) -> Answer:
        queue = self.routes.get(path)
        if not queue:
            return Answer(404, b"<error code='404' message='Not Found'/>", "text/xml")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def hits(self, path: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == path)


def _handler(server_state: RecordedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            server_state.requests.append(
                (parts.path, parse_qs(parts.query), dict(self.headers.items()))
            )
            ans = server_state.answer(parts.path)
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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
