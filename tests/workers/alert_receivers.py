"""Real local receivers for alerts: a JSON webhook (apprise's `json://`) and an SMTP server
(`aiosmtpd`), both on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import threading
import time
from collections import Counter
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

EVENT_ID = re.compile(r"^event id: (\d+)\s*$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebhookReceiver:
    """A JSON webhook: records every post with its arrival (`time.perf_counter`); `status` and
    `delay_s` make it refuse or answer slowly."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict[str, Any], int]] = []
        self.status = 200
        self.delay_s = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the handler's API
                arrived = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.status
                with receiver.lock:
                    receiver.posts.append((arrived, body, status))
                time.sleep(receiver.delay_s)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "hook", auth: str = "") -> str:
        return f"json://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{path}"

    def accepted(self) -> list[dict[str, Any]]:
        """The posts answered with 2xx."""
        with self.lock:
            return [body for _, body, status in self.posts if 200 <= status < 300]

    def accepted_ids(self) -> Counter[int]:
        return Counter(int(p["event_id"]) for p in self.accepted())

    def attempts(self) -> Counter[int]:
        with self.lock:
            return Counter(int(body["event_id"]) for _, body, _ in self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Collect:
    def __init__(self, sink: SmtpReceiver) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.sink.lock:
            self.sink.messages.append(message)
        return "250 OK"


class SmtpReceiver:
    """An SMTP server (aiosmtpd) keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(_Collect(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=alerts@stockpulse.test"
            "&to=analyst@stockpulse.test&mode=insecure"
        )

    @staticmethod
    def text(message: Message) -> str:
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                return payload.decode() if isinstance(payload, bytes) else str(payload)
        return ""

    def accepted_ids(self) -> Counter[int]:
        with self.lock:
            found = [EVENT_ID.search(self.text(m)) for m in self.messages]
        return Counter(int(m.group(1)) for m in found if m)

    def close(self) -> None:
        self.controller.stop()
