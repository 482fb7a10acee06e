"""A tiny loopback HTTP proxy in front of a real registry, for protocol edge cases.

docker-registry never answers 429, never drops a connection mid-blob and has
no token service; this proxy forwards everything to it unchanged except what a
test's ``hook`` decides to answer itself or to break. Every request is
recorded as ``(method, path)``.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Answer:
    """Answer the request with this instead of forwarding it."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class CutAfter:
    """Forward, but send only the first ``count`` body bytes, then drop the connection."""

    count: int


Hook = Callable[[str, str, dict[str, str]], "Answer | CutAfter | None"]


@dataclass
class Proxy:
    host: str
    requests: list[tuple[str, str]]


def _handler_class(upstream: str, hook: Hook, requests: list[tuple[str, str]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is what matters."""

        def _handle(self) -> None:
            headers = {name: value for name, value in self.headers.items()}
            length = int(headers.get("Content-Length", "0") or 0)
            body = self.rfile.read(length) if length else None
            requests.append((self.command, self.path))
            action = hook(self.command, self.path, headers)
            if isinstance(action, Answer):
                self._answer(action)
                return
            self._forward(headers, body, action)

        def _answer(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        def _forward(
            self, headers: dict[str, str], body: bytes | None, cut: CutAfter | None
        ) -> None:
            conn = http.client.HTTPConnection(upstream, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            length = response.getheader("Content-Length", "0") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if cut is not None:
                self.wfile.write(data[: cut.count])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    return Handler


@contextmanager
def proxy(upstream: str, hook: Hook) -> Iterator[Proxy]:
    """A proxy on a free loopback port in front of ``upstream`` (``host:port``)."""
    requests: list[tuple[str, str]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(upstream, hook, requests))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Proxy(f"127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
