"""A fault-injecting reverse proxy for the OCI distribution API, on loopback.

It sits between the indexer and a real registry and, on request, breaks the
conversation the ways real registries and networks do: 5xx bursts, 429 with
``Retry-After``, connections reset in the middle of a blob, bodies that stall,
bodies cut short, and bearer tokens that expire mid-run (the proxy can put a
token service in front of a registry that has none).

Every request is recorded (method, path, status, fault) so tests can check
ordering, for example that the output tag is the last thing written.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

FaultKind = Literal["server-error", "throttle", "reset", "stall", "truncate", "expire-token"]
RequestClass = Literal["blob-get", "manifest-get", "manifest-put", "upload", "any"]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
}
_CHUNK = 64 * 1024


def classify(method: str, path: str) -> set[str]:
    """The request classes a request belongs to (``any`` always)."""
    classes = {"any"}
    if "/blobs/uploads/" in path or path.endswith("/blobs/uploads"):
        classes.add("upload")
    elif re.search(r"/blobs/sha256:[0-9a-f]{64}$", path.split("?", 1)[0]) and method == "GET":
        classes.add("blob-get")
    elif "/manifests/" in path:
        classes.add("manifest-get" if method in ("GET", "HEAD") else "manifest-put")
    return classes


@dataclass
class Fault:
    """One fault, applied to the next ``times`` requests of class ``match``."""

    kind: FaultKind
    match: RequestClass = "blob-get"
    times: int = 1
    status: int = 503  # server-error
    retry_after: str = "1"  # throttle
    after_bytes: int = 256 * 1024  # reset, stall, truncate: body bytes sent first
    stall_seconds: float = 3.0  # stall
    skip: int = 0  # let this many matching requests through first

    def describe(self) -> str:
        return f"{self.kind} on {self.match}"


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    fault: str = ""


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    log: list[Exchange] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    """Reverse proxy to ``upstream`` (host:port) on a free port of 127.0.0.1.

    With ``token_auth`` the proxy demands ``Authorization: Bearer`` on /v2/
    requests and serves a token endpoint at ``/token`` the way Docker Hub and
    ECR-like registries do; the upstream registry itself stays open.
    """

    def __init__(self, upstream: str, *, token_auth: bool = False) -> None:
        self.upstream = upstream
        self.token_auth = token_auth
        self.state = _State()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    def clear(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.log.clear()

    @property
    def log(self) -> list[Exchange]:
        with self.state.lock:
            return list(self.state.log)

    @property
    def issued_tokens(self) -> list[str]:
        """Every bearer token handed out (tests look for them in logs)."""
        with self.state.lock:
            return list(self.state.issued)

    def pending_faults(self) -> int:
        with self.state.lock:
            return sum(f.times for f in self.state.faults)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        classes = classify(method, path)
        with self.state.lock:
            for fault in self.state.faults:
                if fault.match not in classes or fault.times <= 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.kind == "expire-token":
                    self.state.tokens.clear()
                    return None  # the request then fails authorisation by itself
                return fault
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the exchange log is kept in memory instead."""

            def do_GET(self) -> None:
                self._proxy()

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

            def _record(self, status: int, fault: str = "") -> None:
                with proxy.state.lock:
                    proxy.state.log.append(Exchange(self.command, self.path, status, fault))

            def _read_request_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send_simple(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve_token(self) -> None:
                token = secrets.token_urlsafe(24)
                with proxy.state.lock:
                    proxy.state.tokens.add(token)
                    proxy.state.issued.append(token)
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self._send_simple(200, body.encode(), {"Content-Type": "application/json"})
                self._record(200)

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Bearer "):
                    return False
                with proxy.state.lock:
                    return header[len("Bearer ") :] in proxy.state.tokens

            def _challenge(self) -> None:
                realm = f"http://{proxy.address}/token"
                self._send_simple(
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                    {
                        "Content-Type": "application/json",
                        "WWW-Authenticate": f'Bearer realm="{realm}",service="fault-proxy"',
                    },
                )
                self._record(401)

            def _proxy(self) -> None:
                body = self._read_request_body()
                if self.path.startswith("/token"):
                    self._serve_token()
                    return
                fault = proxy._take_fault(self.command, self.path)
                if proxy.token_auth and not self._authorised():
                    self._challenge()
                    return
                if fault is not None and fault.kind == "server-error":
                    self._send_simple(fault.status, b"injected failure\n", {})
                    self._record(fault.status, fault.describe())
                    return
                if fault is not None and fault.kind == "throttle":
                    self._send_simple(
                        429,
                        b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                        {"Retry-After": fault.retry_after, "Content-Type": "application/json"},
                    )
                    self._record(429, fault.describe())
                    return
                self._forward(body, fault)

            def _forward(self, body: bytes, fault: Fault | None) -> None:
                host, port = proxy.upstream.rsplit(":", 1)
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                    and not (proxy.token_auth and name.lower() == "authorization")
                }
                headers["Content-Length"] = str(len(body))
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    self._relay(response, fault)
                finally:
                    upstream.close()

            def _relay(self, response: http.client.HTTPResponse, fault: Fault | None) -> None:
                length_header = response.getheader("Content-Length")
                payload: bytes | None = None
                if length_header is None and self.command != "HEAD":
                    payload = response.read()
                    length = len(payload)
                else:
                    length = int(length_header or 0)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command == "HEAD":
                    self._record(response.status)
                    return
                chunks = iter([payload]) if payload is not None else _body_chunks(response)
                sent = 0
                for chunk in chunks:
                    if fault is not None and sent + len(chunk) > fault.after_bytes:
                        self.wfile.write(chunk[: max(0, fault.after_bytes - sent)])
                        self.wfile.flush()
                        self._break(fault, response.status)
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                self._record(response.status, fault.describe() if fault else "")

            def _break(self, fault: Fault, status: int) -> None:
                """End a response early the way ``fault`` says."""
                self._record(status, fault.describe())
                if fault.kind == "stall":
                    time.sleep(fault.stall_seconds)
                self.close_connection = True
                if fault.kind == "reset":
                    # SO_LINGER with a zero timeout makes close() send RST, not FIN.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    os.close(self.connection.detach())
                    return
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up on us (it got what it needed from a 401) is not an error."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _body_chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


@contextmanager
def fault_proxy(upstream: str, *, token_auth: bool = False) -> Iterator[FaultProxy]:
    with FaultProxy(upstream, token_auth=token_auth) as proxy:
        yield proxy
