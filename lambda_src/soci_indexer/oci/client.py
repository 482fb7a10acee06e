"""OCI distribution API client: auth, retries, streaming blobs, uploads.

One ``RegistryClient`` talks to one registry host. Connections are kept alive
per thread (layers are streamed from a thread pool), blobs arrive as an
iterator of chunks that survives a dropped connection by resuming with a
Range request, and every request is retried with backoff on 429, 5xx and
connection errors. ``with_deadline`` gives a view of the client that stops
anywhere (before a request, between chunks, instead of a retry's wait, and
through socket timeouts never longer than the time left) with
``DeadlineExceeded`` once the deadline passes, or with ``Cancelled`` once a
shared flag is set. Credentials come from a ``CredentialSource`` (``auth``):
by default the Docker config file, or nowhere (anonymous); ``aws.ecr``
supplies Amazon ECR's.
Nothing here ever logs or raises a token: URLs in errors lose their query.
"""

from __future__ import annotations

import copy
import email.utils
import http.client
import json
import logging
import random
import re
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from soci_indexer.errors import AuthError, Cancelled, DeadlineExceeded, RegistryError
from soci_indexer.oci.auth import CredentialSource, DockerConfigCredentials
from soci_indexer.oci.manifests import sha256_digest
from soci_indexer.settings import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
MAX_MANIFEST_SIZE = 4 * 1024 * 1024  # what registries themselves accept
# A blob copied by streaming goes up in PATCH parts of this size (ECR wants at least 5 MiB
# in every part but the last): the most of it held in memory at once.
UPLOAD_PART_SIZE = 8 * 1024 * 1024
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_REPEATABLE = frozenset({"GET", "HEAD", "PUT"})  # requests whose repetition changes nothing

# Observes every response: (method, URL without query, status). Tests use it to
# check the order of writes; the CLI could use it for a debug trace.
RequestObserver = Callable[[str, str, int], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. ``sleep`` is injectable so tests can see the waits."""

    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * (2.0**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


class _ShortRead(Exception):
    """A blob body ended before its declared length (connection dropped mid-body)."""


class _Challenge:
    """Per-registry auth state: the scheme the registry asked for and cached tokens."""

    def __init__(self, source: CredentialSource) -> None:
        self.source = source
        self.scheme = ""  # "basic" or "bearer" once the registry has said
        self.realm = ""
        self.service = ""
        self.tokens: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()


_Key = tuple[str, str]  # a connection's (scheme, host:port)


class _Connections:
    """Every keep-alive connection a client opened, by the thread that uses it.

    A connection belongs to one thread (http.client connections are not
    thread-safe); keeping them all in one place lets the client close those
    of threads that have ended (a finished layer pool) and, on ``close()``,
    every one of them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: dict[threading.Thread, dict[_Key, http.client.HTTPConnection]] = {}

    def of_this_thread(self) -> dict[_Key, http.client.HTTPConnection]:
        thread = threading.current_thread()
        with self._lock:
            return self._by_thread.setdefault(thread, {})

    def close_finished(self) -> None:
        with self._lock:
            ended = [thread for thread in self._by_thread if not thread.is_alive()]
            pools = [self._by_thread.pop(thread) for thread in ended]
        _close_pools(pools)

    def close_all(self) -> None:
        with self._lock:
            pools = list(self._by_thread.values())
            self._by_thread.clear()
        _close_pools(pools)


def _close_pools(pools: Iterable[dict[_Key, http.client.HTTPConnection]]) -> None:
    for pool in pools:
        while pool:
            pool.popitem()[1].close()


class RegistryClient:
    """Talks to one registry host over the OCI distribution API.

    Close it when done (``close()`` or a ``with`` block): that closes the
    connections every thread opened. ``close_finished_threads()`` closes those
    of threads that have ended. A client nobody closes is closed when it is
    garbage-collected or, at the latest, when the interpreter exits.
    """

    def __init__(
        self,
        host: str,
        *,
        plain_http: bool = False,
        credentials: CredentialSource | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        observer: RequestObserver | None = None,
    ) -> None:
        self.host = host
        self.scheme = "http" if plain_http else "https"
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.observer = observer
        self._auth = _Challenge(credentials or DockerConfigCredentials(host))
        self._connections = _Connections()
        weakref.finalize(self, self._connections.close_all)
        self._deadline: float | None = None  # time.monotonic() value
        self._cancelled: threading.Event | None = None

    def with_deadline(
        self, deadline: float | None, cancelled: threading.Event | None = None
    ) -> RegistryClient:
        """This client (same connections, tokens and settings), stopping every call with
        ``DeadlineExceeded`` once ``time.monotonic()`` passes ``deadline`` and with
        ``Cancelled`` once ``cancelled`` is set: checked before each request and between
        chunks of a blob, and in place of any retry wait that would end past the
        deadline. Socket timeouts are cut to the time left, so a stalled read ends at
        the deadline too. Close the client itself, not the view."""
        view = copy.copy(self)
        view._deadline = deadline
        view._cancelled = cancelled
        return view

    # ---- manifests ---------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest; a digest is checked against the body."""
        reply = self._call(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=_scope(repository),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if len(reply.body) > MAX_MANIFEST_SIZE:
            raise RegistryError("manifest larger than 4 MiB", url=self._url(repository, reference))
        digest = sha256_digest(reply.body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(
                f"manifest content hashes to {digest}, not the digest asked for",
                url=self._url(repository, reference),
            )
        media_type = reply.headers.get("content-type", "").split(";")[0].strip()
        return FetchedManifest(reply.body, media_type, digest)

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to, or None when it does not exist."""
        reply = self._call(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=_scope(repository),
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(200, 404),
        )
        if reply.status == 404:
            return None
        return (
            reply.headers.get("docker-content-digest")
            or self.get_manifest(repository, reference).digest
        )

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> bool:
        """Store a manifest under a tag or its digest. Returns True when the registry
        says it processed the manifest's ``subject`` (``OCI-Subject`` header).

        A ``MANIFEST_BLOB_UNKNOWN`` answer is retried: every caller pushes the
        blobs first, so the registry has not yet seen a blob it has stored. That
        happens when another writer is pushing the same blob at that moment
        (docker-registry rewrites the blob's link file in place) and on
        registries whose blob writes are not read-after-write consistent.
        """
        path = f"/v2/{repository}/manifests/{reference}"
        attempt = 0
        while True:
            reply = self._call(
                "PUT",
                path,
                scope=_scope(repository, push=True),
                headers={"Content-Type": media_type},
                body=data,
                ok=(201, 400),
            )
            if reply.status == 201:
                break
            attempt += 1
            codes = _error_codes(reply.body)
            if "MANIFEST_BLOB_UNKNOWN" not in codes or attempt >= self.retry.attempts:
                raise _status_error("PUT manifest", 400, reply.body, self._absolute(path))
            wait = self.retry.backoff(attempt - 1)
            log.info("PUT %s: registry does not see a blob yet; retrying in %.2fs", path, wait)
            self._wait(wait, f"PUT {_resource(path)}")
        stored = reply.headers.get("docker-content-digest")
        if stored and stored != sha256_digest(data):
            raise RegistryError(
                f"registry stored the manifest as {stored}, not {sha256_digest(data)}",
                url=self._url(repository, reference),
            )
        return "oci-subject" in reply.headers

    def list_tags(self, repository: str, *, page_size: int = 1000) -> list[str]:
        """Every tag of the repository, following ``Link`` pagination."""
        tags: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n={page_size}"
        while path:
            reply = self._call("GET", path, scope=_scope(repository))
            try:
                tags.extend(json.loads(reply.body).get("tags") or [])
            except (ValueError, AttributeError):
                raise RegistryError("tag list is not JSON", url=self._url(repository)) from None
            path = _next_link(reply.headers.get("link", ""))
        return tags

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """Descriptors the referrers API lists for ``digest``; None if the registry lacks it."""
        reply = self._call(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            scope=_scope(repository),
            headers={"Accept": OCI_INDEX},
            ok=(200, 404),
        )
        if reply.status == 404 or not reply.headers.get("content-type", "").startswith(OCI_INDEX):
            return None
        try:
            manifests = json.loads(reply.body).get("manifests") or []
        except (ValueError, AttributeError):
            raise RegistryError("referrers list is not JSON", url=self._url(repository)) from None
        return [item for item in manifests if isinstance(item, dict)]

    # ---- blobs -------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The blob's size when the repository has it, else None."""
        reply = self._call(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository), ok=(200, 404)
        )
        if reply.status == 404:
            return None
        url = self._url(repository, "blobs", digest)
        return _content_length(reply.headers.get("content-length", "0"), url) or 0

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A small blob (config, zTOC) in memory."""
        return b"".join(self.stream_blob(repository, digest))

    def get_blob_range(self, repository: str, digest: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a blob."""
        if end <= start:
            return b""
        return b"".join(self.stream_blob(repository, digest, start=start, end=end))

    def stream_blob(
        self,
        repository: str,
        digest: str,
        *,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> Generator[bytes, None, None]:
        """The blob's bytes ``[start, end)`` as chunks, never staged on disk.

        A connection that breaks mid-body is re-opened with a Range request
        from the first byte not yet yielded, so the consumer sees every byte
        exactly once. Gives up after ``retry.attempts`` breaks in a row.
        """
        return self._stream_blob(repository, digest, start, end, chunk_size, None)

    def stream_blob_head(
        self, repository: str, digest: str, end: int, *, chunk_size: int = CHUNK_SIZE
    ) -> tuple[bool, Generator[bytes, None, None]]:
        """Ask for the blob's bytes ``[0, end)`` and say whether the registry honoured the
        Range: ``(True, those bytes)`` when it answered 206, ``(False, the whole blob)``
        when it ignored the Range and sent everything (200), so a caller that planned
        to fetch the rest in ranges reads this one stream instead and nothing is asked
        for twice. Either stream resumes like ``stream_blob``."""
        opened = self._open_blob(repository, digest, 0, end)
        ranged = opened[1].status == 206
        return ranged, self._stream_blob(
            repository, digest, 0, end if ranged else None, chunk_size, opened
        )

    def _stream_blob(
        self,
        repository: str,
        digest: str,
        start: int,
        end: int | None,
        chunk_size: int,
        opened: tuple[_Key, http.client.HTTPResponse] | None,
    ) -> Generator[bytes, None, None]:
        position = start
        failures = 0
        while end is None or position < end:
            try:
                current = opened or self._open_blob(repository, digest, position, end)
                opened = None  # a resume asks again, from the first byte not yet yielded
                for chunk in self._read_blob(
                    current, repository, digest, position, end, chunk_size
                ):
                    position += len(chunk)
                    failures = 0
                    yield chunk
                return
            except (OSError, http.client.HTTPException, _ShortRead) as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise RegistryError(
                        f"blob download broke {failures} times at byte {position}: {exc}",
                        url=self._url(repository, "blobs", digest),
                    ) from None
                log.info("blob %s broke at byte %d (%s); resuming", digest, position, exc)
                self._wait(self.retry.backoff(failures - 1), f"resuming blob {digest}")

    def push_blob(
        self,
        repository: str,
        data: bytes,
        *,
        mount_from: str | None = None,
        chunk_size: int | None = None,
    ) -> str:
        """Upload ``data`` unless the repository already has it; returns its digest.

        ``mount_from`` first asks for a cross-repository mount; ``chunk_size``
        uploads in PATCH chunks instead of one PUT. A failed upload is started
        over once from a new session.
        """
        digest = sha256_digest(data)
        if self.blob_size(repository, digest) is not None:
            return digest
        try:
            self._upload(repository, data, digest, mount_from, chunk_size)
        except RegistryError as exc:
            log.info("upload of %s to %s failed (%s); starting over", digest, repository, exc)
            self._upload(repository, data, digest, mount_from, chunk_size)
        return digest

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link ``digest`` of ``from_repository`` into ``repository``
        without a byte of it being sent (the distribution spec's cross-repository mount).

        True when mounted (201). False when the registry declined (202: it may not
        support mounts, or not between these repositories) and opened an upload
        session instead; that session is cancelled, and the caller copies the blob.
        """
        reply = self._call(
            "POST",
            f"/v2/{repository}/blobs/uploads/?mount={digest}&from={from_repository}",
            scope=f"{_scope(repository, push=True)} {_scope(from_repository)}",
            ok=(201, 202),
        )
        if reply.status == 201:
            return True
        location = reply.headers.get("location")
        if location:
            self._cancel_upload(location, repository)
        return False

    def copy_blob(self, repository: str, digest: str, from_repository: str) -> str:
        """Make ``repository`` hold blob ``digest`` of ``from_repository``; returns how.

        ``"present"`` when it already had it, ``"mounted"`` when the registry linked
        it (no byte sent), ``"streamed"`` when it had to be read and uploaded, a part
        of ``UPLOAD_PART_SIZE`` at a time (never whole in memory). The registry
        checks the digest of what it received before it keeps the blob.
        """
        if self.blob_size(repository, digest) is not None:
            return "present"
        if self.mount_blob(repository, digest, from_repository):
            return "mounted"
        try:
            self._upload_stream(repository, digest, from_repository)
        except RegistryError as exc:
            log.info("copy of %s to %s failed (%s); starting over", digest, repository, exc)
            self._upload_stream(repository, digest, from_repository)
        return "streamed"

    def ping(self) -> None:
        """``GET /v2/``: the registry answers (authenticating if it asks)."""
        self._call("GET", "/v2/", scope="")

    # ---- uploads -----------------------------------------------------------------------------

    def _upload(
        self,
        repository: str,
        data: bytes,
        digest: str,
        mount_from: str | None,
        chunk_size: int | None,
    ) -> None:
        scope = _scope(repository, push=True)
        path = f"/v2/{repository}/blobs/uploads/"
        if mount_from:
            path += f"?mount={digest}&from={mount_from}"
            scope += " " + _scope(mount_from)
        started = self._call("POST", path, scope=scope, ok=(201, 202))
        if started.status == 201:
            return
        location = self._location(started, repository)
        if chunk_size:
            for offset in range(0, len(data), chunk_size):
                piece = data[offset : offset + chunk_size]
                location = self._patch(location, scope, repository, offset, piece)
            data = b""
        self._close_upload(location, scope, digest, data)

    def _patch(self, location: str, scope: str, repository: str, offset: int, piece: bytes) -> str:
        """Send one part of an upload; returns where the next request goes."""
        patched = self._call(
            "PATCH",
            location,
            scope=scope,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            },
            body=piece,
            ok=(202,),
        )
        return self._location(patched, repository)

    def _close_upload(self, location: str, scope: str, digest: str, data: bytes) -> None:
        """The closing PUT (with the last bytes, if any): the registry checks the digest."""
        self._call(
            "PUT",
            _with_query(location, digest=digest),
            scope=scope,
            headers={"Content-Type": "application/octet-stream"},
            body=data,
            ok=(201,),
        )

    def _upload_stream(self, repository: str, digest: str, from_repository: str) -> None:
        """Upload blob ``digest`` of ``from_repository`` a part at a time: each part read
        with a Range request, then sent as one PATCH; the closing PUT names the digest.
        (Whole requests, one after the other: a blob stream held open on the connection
        would be in the way of the PATCH on the same registry.)"""
        total = self.blob_size(from_repository, digest)
        if total is None:
            raise RegistryError(
                f"blob {digest} is not in {from_repository}, so it cannot be copied",
                status=404,
                url=self._url(from_repository, "blobs", digest),
            )
        scope = _scope(repository, push=True)
        started = self._call("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, ok=(202,))
        location = self._location(started, repository)
        for offset in range(0, total, UPLOAD_PART_SIZE):
            end = min(offset + UPLOAD_PART_SIZE, total)
            piece = self.get_blob_range(from_repository, digest, offset, end)
            location = self._patch(location, scope, repository, offset, piece)
        self._close_upload(location, scope, digest, b"")

    def _cancel_upload(self, location: str, repository: str) -> None:
        """Abandon an upload session; a registry that will not is left to expire it."""
        try:
            self._call("DELETE", location, scope=_scope(repository, push=True), ok=(204, 404))
        except RegistryError as exc:
            log.info("upload session in %s not cancelled (%s); it will expire", repository, exc)

    def _location(self, reply: Reply, repository: str) -> str:
        location = reply.headers.get("location")
        if not location:
            raise RegistryError("upload answer has no Location", url=self._url(repository))
        return location

    # ---- blob reading ------------------------------------------------------------------------

    def _open_blob(
        self, repository: str, digest: str, position: int, end: int | None
    ) -> tuple[_Key, http.client.HTTPResponse]:
        headers = {}
        if position or end is not None:
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={position}-{last}"
        return self._open(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository), headers=headers
        )

    def _read_blob(
        self,
        opened: tuple[_Key, http.client.HTTPResponse],
        repository: str,
        digest: str,
        position: int,
        end: int | None,
        chunk_size: int,
    ) -> Iterator[bytes]:
        conn_key, response = opened
        finished = False
        pending = bytearray()  # arrived, not yet yielded
        conn = self._connections.of_this_thread()[conn_key]
        try:
            remaining = self._body_length(response, repository, digest, position, end)
            while remaining is None or remaining > 0:
                self._check(f"GET blob {digest}")
                self._bound_socket(conn)
                want = chunk_size - len(pending)
                # read1: take what has arrived instead of waiting for a whole chunk, so a
                # connection that breaks loses nothing the socket had already delivered
                piece = response.read1(want if remaining is None else min(want, remaining))
                if not piece:
                    if remaining is None:
                        break
                    raise _ShortRead(f"body ended {remaining} bytes early")
                pending += piece
                if remaining is not None:
                    remaining -= len(piece)
                if len(pending) >= chunk_size:
                    yield bytes(pending)
                    pending.clear()
            if pending:
                yield bytes(pending)
            finished = True
        except (OSError, http.client.HTTPException, _ShortRead):
            if pending:  # good bytes: the resume starts after them
                yield bytes(pending)
            raise
        finally:
            if not finished or not response.isclosed():
                self._drop(conn_key)

    def _body_length(
        self,
        response: http.client.HTTPResponse,
        repository: str,
        digest: str,
        position: int,
        end: int | None,
    ) -> int | None:
        """Bytes to read from ``response``; skips what a server ignoring Range re-sent."""
        url = self._url(repository, "blobs", digest)
        total = _content_length(response.getheader("content-length"), url)
        if response.status == 206:
            first = _content_range_start(response.getheader("content-range", ""))
            if first != position:
                raise RegistryError(f"asked for byte {position}, got range from {first}", url=url)
            return total
        if response.status != 200:
            body = response.read(64 * 1024)
            raise _status_error(f"GET blob {digest}", response.status, body, url)
        if position:  # the server ignored Range and sent the whole blob: skip to position
            _discard(response, position)
            total = None if total is None else total - position
        if end is not None:
            total = end - position if total is None else min(total, end - position)
        return total

    # ---- the request loop --------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        ok: Iterable[int] = (200,),
        sign: bool = True,
    ) -> Reply:
        """One request with retries, auth and redirects; the whole body read.

        An answer whose body breaks off is asked for again when repeating the
        request is harmless (everything but POST and PATCH).
        """
        attempt = 0
        while True:
            conn_key, response = self._open(
                method, path, scope=scope, headers=headers, body=body, sign=sign
            )
            try:
                # Read even a HEAD answer (b""): only a read response frees the connection for
                # the next request; an unread one makes it fail with ResponseNotReady.
                data = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._drop(conn_key)
                attempt += 1
                if method not in _REPEATABLE or attempt >= self.retry.attempts:
                    raise RegistryError(
                        f"{method} failed reading the answer after {attempt} attempts: {exc}",
                        url=_clean(self._absolute(path)),
                    ) from None
                log.info("%s %s: the answer broke off (%s); asking again", method, path, exc)
                self._wait(self.retry.backoff(attempt - 1), f"{method} {_resource(path)}")
        reply = Reply(response.status, _lower_headers(response), data)
        if reply.status not in tuple(ok):
            raise _status_error(
                f"{method} {_resource(path)}", reply.status, data, self._absolute(path)
            )
        return reply

    def _open(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        sign: bool = True,
    ) -> tuple[_Key, http.client.HTTPResponse]:
        """Send a request until it gets an answer worth returning (not 401 once, not a
        retryable failure while attempts remain, not a redirect); the body is unread.
        ``sign=False`` sends no registry credentials and returns a 401 as it is."""
        url = self._absolute(path)
        first_host = urllib.parse.urlsplit(url).netloc
        authenticated = False
        redirects = 0
        attempt = 0
        while True:
            self._check(f"{method} {_resource(path)}")
            host = urllib.parse.urlsplit(url).netloc
            # Credentials go only where they were meant for: the registry's own, to the
            # registry; a caller's, to the host it asked. A redirect elsewhere (ECR sends
            # blob GETs to pre-signed S3 URLs) is followed without them.
            send_headers = {
                name: value
                for name, value in (headers or {}).items()
                if host == first_host or name.lower() != "authorization"
            }
            own_host = sign and host == self.host
            if own_host:
                send_headers.update(self._auth_header(scope))
            try:
                conn_key, response = self._send(method, url, send_headers, body)
            except (OSError, http.client.HTTPException) as exc:
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise RegistryError(
                        f"{method} failed after {attempt} attempts: {exc}", url=_clean(url)
                    ) from None
                self._wait(self.retry.backoff(attempt - 1), f"{method} {_resource(path)}")
                continue
            status = response.status
            if status == 401 and own_host and not authenticated:
                challenge = response.getheader("www-authenticate", "")
                self._finish(conn_key, response)
                self._authenticate(challenge, scope, url)
                authenticated = True
                continue
            if status in _REDIRECT_STATUSES and response.getheader("location"):
                redirects += 1
                location = urllib.parse.urljoin(url, response.getheader("location", ""))
                self._finish(conn_key, response)
                if redirects > 5:
                    raise RegistryError("too many redirects", url=_clean(url))
                url = _redirect_target(url, location)
                continue
            if status in _RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                wait, asked = self._retry_wait(response, attempt)
                self._finish(conn_key, response)
                log.info("%s %s answered %d; retrying in %.2fs", method, _clean(url), status, wait)
                attempt += 1
                what = f"{method} {_resource(path)} answered {status}"
                self._wait(wait, what + (" with Retry-After" if asked else ""))
                continue
            if status == 401 and own_host:
                self._finish(conn_key, response)
                raise AuthError("the registry refused our credentials", status=401, url=_clean(url))
            return conn_key, response

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[_Key, http.client.HTTPResponse]:
        parts = urllib.parse.urlsplit(url)
        conn_key = (parts.scheme, parts.netloc)
        conn = self._connection(conn_key)
        self._bound_socket(conn)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
        except BaseException:
            self._drop(conn_key)
            raise
        if self.observer is not None:
            self.observer(method, _clean(url), response.status)
        log.debug("%s %s -> %d", method, _clean(url), response.status)
        return conn_key, response

    def _retry_wait(self, response: http.client.HTTPResponse, attempt: int) -> tuple[float, bool]:
        """Seconds to wait before retrying, and whether the registry said how long."""
        retry_after = _parse_retry_after(response.getheader("retry-after"))
        if retry_after is not None:
            return min(retry_after, self.retry.max_retry_after), True
        return self.retry.backoff(attempt), False

    # ---- deadline and cancellation -----------------------------------------------------------

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _check(self, doing: str) -> None:
        """Raise if the run was cancelled or its deadline has passed."""
        if self._cancelled is not None and self._cancelled.is_set():
            raise Cancelled(f"stopped before {doing}: another part of the run failed")
        left = self._time_left()
        if left is not None and left <= 0:
            raise DeadlineExceeded(f"the deadline passed during {doing}")

    def _wait(self, seconds: float, doing: str) -> None:
        """A retry's wait, unless it would end past the deadline: then fail now."""
        self._check(doing)
        left = self._time_left()
        if left is not None and seconds >= left:
            raise DeadlineExceeded(
                f"{doing}; waiting {seconds:.1f} s to retry would pass the deadline "
                f"({max(left, 0):.1f} s left)"
            )
        self.retry.sleep(seconds)
        self._check(doing)

    def _socket_timeout(self) -> float:
        """The client's timeout, cut to the time left before the deadline."""
        left = self._time_left()
        return self.timeout if left is None else max(min(self.timeout, left), 0.001)

    def _bound_socket(self, conn: http.client.HTTPConnection) -> None:
        timeout = self._socket_timeout()
        conn.timeout = timeout  # the next connect
        if conn.sock is not None:  # an open connection: its next send and receive
            conn.sock.settimeout(timeout)

    def _finish(self, conn_key: _Key, response: http.client.HTTPResponse) -> None:
        """Read a response we do not want so the connection can be reused."""
        try:
            _discard(response, None)
        except (OSError, http.client.HTTPException):
            self._drop(conn_key)

    # ---- connections -------------------------------------------------------------------------

    def _connection(self, key: _Key) -> http.client.HTTPConnection:
        pool = self._connections.of_this_thread()
        conn = pool.get(key)
        if conn is None:
            scheme, netloc = key
            factory = (
                http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            )
            conn = factory(netloc, timeout=self.timeout)
            pool[key] = conn
        return conn

    def _drop(self, key: _Key) -> None:
        conn = self._connections.of_this_thread().pop(key, None)
        if conn is not None:
            conn.close()

    def close_finished_threads(self) -> None:
        """Close the connections of threads that have ended, such as a finished pool's."""
        self._connections.close_finished()

    def close(self) -> None:
        """Close the connections of every thread. Call it once no thread uses the client;
        a later request opens a new connection."""
        self._connections.close_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- auth --------------------------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        auth = self._auth
        if auth.scheme == "basic":
            creds = auth.source.credentials()
            return {"Authorization": creds.basic()} if creds else {}
        if auth.scheme == "bearer":
            with auth.lock:
                token = auth.tokens.get(scope)
            if token and token[1] > time.monotonic():
                return {"Authorization": f"Bearer {token[0]}"}
        return {}

    def _authenticate(self, challenge: str, scope: str, url: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if self._auth.source.credentials() is None:
                raise AuthError("the registry wants a login and we have none", url=_clean(url))
            self._auth.scheme = "basic"
        elif scheme == "bearer" and params.get("realm"):
            self._auth.realm = params["realm"]
            self._auth.service = params.get("service", "")
            self._auth.scheme = "bearer"
            self._fetch_token(scope or params.get("scope", ""))
        else:
            raise AuthError("unsupported authentication challenge", status=401, url=_clean(url))

    def _fetch_token(self, scope: str) -> None:
        """Token auth (distribution's token spec): ask the realm for a token for ``scope``."""
        query = [("service", self._auth.service)] if self._auth.service else []
        query += [("scope", part) for part in scope.split()]
        realm = self._auth.realm
        token_url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        creds = self._auth.source.credentials()
        headers = {"Authorization": creds.basic()} if creds else {}
        try:
            body = self._call("GET", token_url, scope="", headers=headers, sign=False).body
        except RegistryError as exc:
            if exc.status is None:  # the token service could not be reached
                raise
            raise AuthError(
                "the token service refused us", status=exc.status, url=_clean(realm)
            ) from None
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError("the token service sent no token", url=_clean(realm))
        with self._auth.lock:
            self._auth.tokens[scope] = (token, time.monotonic() + max(lifetime - 10, 1))

    # ---- helpers -----------------------------------------------------------------------------

    def _absolute(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.scheme}://{self.host}{path}"

    def _url(self, repository: str, *parts: str) -> str:
        return "/".join((f"{self.scheme}://{self.host}/v2/{repository}", *parts))


def _scope(repository: str, *, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}" if repository else ""


def _clean(url: str) -> str:
    """A URL safe to show: no query (pre-signed URLs and upload states carry secrets)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _redirect_target(current: str, location: str) -> str:
    """Where a redirect may take us: http(s) only, and never from https down to http."""
    before, after = urllib.parse.urlsplit(current).scheme, urllib.parse.urlsplit(location).scheme
    if after not in ("http", "https"):
        raise RegistryError(f"refused a redirect to a {after!r} URL", url=_clean(current))
    if before == "https" and after != "https":
        raise RegistryError(
            "refused a redirect from https to http: the answer would travel unencrypted",
            url=_clean(current),
        )
    return location


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def _lower_headers(response: http.client.HTTPResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in response.getheaders()}


def _discard(response: http.client.HTTPResponse, count: int | None) -> None:
    """Read and drop ``count`` bytes (all, when None)."""
    left = count
    while left is None or left > 0:
        chunk = response.read(CHUNK_SIZE if left is None else min(CHUNK_SIZE, left))
        if not chunk:
            if left is not None:
                raise _ShortRead("body ended while skipping")
            return
        if left is not None:
            left -= len(chunk)


def _resource(path: str) -> str:
    """What a request path names, for error messages."""
    for marker, name in (
        ("/manifests/", "manifest"),
        ("/blobs/uploads", "blob upload"),
        ("/blobs/", "blob"),
        ("/tags/list", "tag list"),
        ("/referrers/", "referrers"),
    ):
        if marker in path:
            return name
    return "request"


def _registry_errors(body: bytes) -> list[dict[str, Any]]:
    """The ``errors`` array of an OCI error body; empty when the body is not one."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError, TypeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_codes(body: bytes) -> set[str]:
    return {str(e.get("code", "")) for e in _registry_errors(body)}


def _status_error(what: str, status: int, body: bytes, url: str) -> RegistryError:
    """A RegistryError with the registry's own error message, when it sent one."""
    errors = _registry_errors(body)
    detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors[:3])
    cls = AuthError if status in (401, 403) else RegistryError
    message = f"{what} failed" + (f": {detail}" if detail else "")
    return cls(message, status=status, url=_clean(url))


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _content_length(value: str | None, url: str) -> int | None:
    """A Content-Length header as a number of bytes (None when there is none)."""
    if value is None:
        return None
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise RegistryError(f"the registry sent a Content-Length of {value[:40]!r}", url=url)
    return int(digits)


def _content_range_start(value: str) -> int | None:
    match = re.match(r"bytes (\d+)-", value.strip())
    return int(match.group(1)) if match else None


def _next_link(header: str) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', header)
    return match.group(1) if match else None
