"""A loopback HTTP proxy in front of a real registry, for what the registry never does.

docker-registry never answers 429, never drops a connection mid-blob, never
stalls and has no token service. This proxy forwards everything to it
unchanged, streaming bodies, except what a test's ``hook`` decides to answer
itself (``Answer``), to break (``CutAfter``) or to send elsewhere
(``Rewrite``). A hook may also change the request headers it is given before
they are forwarded (drop ``Range`` to play a registry that ignores it, add the
login a pre-signed URL stands for).
Every exchange is recorded with the status the client saw, so tests can check
what was asked, in which order, and how it ended. ``rate`` caps what each
connection receives (bytes per second), as one stream from a real registry is
capped.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade"}  # fmt: skip
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """Answer the request with this instead of forwarding it (with a Content-Length
    of the body unless ``headers`` set one, garbled or not)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class CutAfter:
    """Forward, but end the body after ``count`` bytes.

    ``close`` ends the connection cleanly (a short body), ``reset`` with an
    RST, ``stall`` stops sending for ``stall_seconds`` and then closes.
    """

    count: int
    how: Literal["close", "reset", "stall"] = "close"
    stall_seconds: float = 0.0


@dataclass(frozen=True)
class Rewrite:
    """Forward the request to ``path`` (with its query) instead of the path asked for: a
    registry that ignores part of a request, such as a mount it will not do."""

    path: str


Action = Answer | CutAfter | Rewrite | None
Hook = Callable[[str, str, dict[str, str]], Action]


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    action: str = ""  # "" when forwarded untouched

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status} {self.action}".rstrip()


@dataclass
class Proxy:
    host: str
    requests: list[tuple[str, str]]  # (method, path), in order of arrival
    # In order of completion, with the status the client saw. The proxy records an
    # exchange after the client already has its answer, so the last one may not be
    # here yet when the client returns: for exact sequences, use a client observer.
    exchanges: list[Exchange]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up on us (it had what it needed from a 401) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _handler_class(
    upstream: str,
    hook: Hook,
    requests: list[tuple[str, str]],
    exchanges: list[Exchange],
    rate: float | None = None,
) -> type:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the exchange log is kept in memory instead."""

        def _record(self, status: int, action: str = "") -> None:
            with lock:
                exchanges.append(Exchange(self.command, self.path, status, action))

        def _handle(self) -> None:
            headers = dict(self.headers.items())
            length = int(headers.get("Content-Length", "0") or 0)
            body = self.rfile.read(length) if length else None
            with lock:
                requests.append((self.command, self.path))
            action = hook(self.command, self.path, headers)
            if isinstance(action, Answer):
                self._answer(action)
            elif isinstance(action, Rewrite):
                self.path = action.path
                self._forward(headers, body, None)
            else:
                self._forward(headers, body, action)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        def _answer(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if "content-length" not in {name.lower() for name in answer.headers}:
                self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self._record(answer.status, f"answered {answer.status}")

        def _forward(
            self, headers: dict[str, str], body: bytes | None, cut: CutAfter | None
        ) -> None:
            conn = http.client.HTTPConnection(upstream, timeout=60)
            headers = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                self._relay(conn.getresponse(), cut)
            finally:
                conn.close()

        def _relay(self, response: http.client.HTTPResponse, cut: CutAfter | None) -> None:
            length = response.getheader("Content-Length")
            payload = None
            if length is None and self.command != "HEAD":
                payload = response.read()
                length = str(len(payload))
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command == "HEAD":
                self._record(response.status)
                return
            chunks = iter([payload]) if payload is not None else _body_chunks(response)
            sent = 0
            started = time.monotonic()
            for chunk in chunks:
                if rate is not None:  # this body's bytes never ahead of rate x time
                    time.sleep(max(0.0, started + sent / rate - time.monotonic()))
                if cut is not None and sent + len(chunk) > cut.count:
                    self.wfile.write(chunk[: max(0, cut.count - sent)])
                    self.wfile.flush()
                    self._record(response.status, f"{cut.how} after {cut.count}")
                    self._break(cut)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
            self._record(response.status)

        def _break(self, cut: CutAfter) -> None:
            self.close_connection = True
            if cut.how == "stall":
                time.sleep(cut.stall_seconds)
            if cut.how == "reset":
                # SO_LINGER with a zero timeout makes the close send RST, not FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                os.close(self.connection.detach())
                return
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


def login_then_redirect_blobs(authorization: str, storage: str) -> Hook:
    """A registry the way ECR behaves: every request without ``authorization`` (the
    exact header value) gets a 401 Basic challenge, and blob GETs are redirected to
    the same path on ``storage`` (``host:port``) with a pre-signed-looking query."""

    def hook(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if headers.get("Authorization") != authorization:
            return Answer(401, {"WWW-Authenticate": 'Basic realm="test"'})
        if "/blobs/" in path:
            return Answer(307, {"Location": f"http://{storage}{path}?X-Amz-Signature=s"})
        return None

    return hook


def _body_chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by ``openssl``: the certificate is
    its own authority, so a client trusts it through ``SSL_CERT_FILE``."""
    cert, key = directory / "loopback.crt", directory / "loopback.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def proxy(
    upstream: str,
    hook: Hook,
    *,
    tls: tuple[Path, Path] | None = None,
    rate: float | None = None,
) -> Iterator[Proxy]:
    """A proxy on a free loopback port in front of ``upstream`` (``host:port``);
    ``tls`` (certificate, key) makes it speak HTTPS; ``rate`` (bytes per second)
    caps each response body, so each connection, at that speed."""
    requests: list[tuple[str, str]] = []
    exchanges: list[Exchange] = []
    handler = _handler_class(upstream, hook, requests, exchanges, rate)
    server = _QuietServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Proxy(f"127.0.0.1:{server.server_address[1]}", requests, exchanges)
    finally:
        server.shutdown()
        server.server_close()
