"""Faults on a schedule, and a token service, for the proxy in ``support.proxy``.

A ``FaultProxy`` breaks the conversation between the indexer and the real
registry the ways real registries and networks do: 5xx bursts, 429 with
``Retry-After``, connections reset in the middle of a blob, bodies that stall,
bodies cut short, and bearer tokens that expire mid-run (it puts a token
service in front of a registry that has none).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

from support.proxy import Action, Answer, CutAfter, Exchange, proxy

FaultKind = Literal["server-error", "throttle", "reset", "stall", "truncate", "expire-token"]
RequestClass = Literal["blob-get", "manifest-get", "manifest-put", "upload", "any"]
_BREAKS: dict[str, Literal["close", "reset", "stall"]] = {
    "reset": "reset",
    "stall": "stall",
    "truncate": "close",
}


def classify(method: str, path: str) -> set[str]:
    """The request classes a request belongs to (``any`` always)."""
    classes = {"any"}
    if "/blobs/uploads" in path:
        classes.add("upload")
    elif method == "GET" and re.search(r"/blobs/sha256:[0-9a-f]{64}$", path.split("?", 1)[0]):
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


class FaultProxy:
    """A proxy to ``upstream`` (host:port) applying injected faults in order.

    With ``token_auth`` it demands ``Authorization: Bearer`` on /v2/ requests
    and serves tokens at ``/token``, the way Docker Hub and ECR-like
    registries do; the upstream registry itself stays open.
    """

    def __init__(self, upstream: str, *, token_auth: bool = False) -> None:
        self.upstream = upstream
        self.token_auth = token_auth
        self._faults: list[Fault] = []
        self._tokens: set[str] = set()
        self._issued: list[str] = []
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self.address = ""
        self._exchanges: list[Exchange] = []

    def __enter__(self) -> FaultProxy:
        front = self._stack.enter_context(proxy(self.upstream, self._hook))
        self.address, self._exchanges = front.host, front.exchanges
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    @property
    def log(self) -> list[Exchange]:
        return list(self._exchanges)

    @property
    def issued_tokens(self) -> list[str]:
        """Every bearer token handed out (tests look for them in logs)."""
        with self._lock:
            return list(self._issued)

    def pending_faults(self) -> int:
        with self._lock:
            return sum(fault.times for fault in self._faults)

    def _hook(self, method: str, path: str, headers: dict[str, str]) -> Action:
        if path.startswith("/token"):
            return self._issue_token()
        fault = self._take_fault(method, path)
        if self.token_auth and not self._authorised(headers):
            realm = f"http://{self.address}/token"
            return Answer(
                401,
                {"WWW-Authenticate": f'Bearer realm="{realm}",service="fault-proxy"'},
                b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            )
        if fault is None:
            return None
        if fault.kind == "server-error":
            return Answer(fault.status, body=b"injected failure\n")
        if fault.kind == "throttle":
            return Answer(
                429,
                {"Retry-After": fault.retry_after},
                b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
            )
        return CutAfter(fault.after_bytes, _BREAKS[fault.kind], fault.stall_seconds)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        classes = classify(method, path)
        with self._lock:
            for fault in self._faults:
                if fault.match not in classes or fault.times <= 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.kind == "expire-token":
                    self._tokens.clear()  # this request then fails authorisation by itself
                    return None
                return fault
        return None

    def _issue_token(self) -> Answer:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
            self._issued.append(token)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
        return Answer(200, {"Content-Type": "application/json"}, body.encode())

    def _authorised(self, headers: dict[str, str]) -> bool:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        with self._lock:
            return value.startswith("Bearer ") and value[len("Bearer ") :] in self._tokens
