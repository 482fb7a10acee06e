"""The registry client against a real docker-registry (and a proxy for what it never does)."""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from soci_indexer.errors import AuthError, DeadlineExceeded, RegistryError
from soci_indexer.oci import client as client_module
from soci_indexer.oci.auth import Credentials, StaticCredentials
from soci_indexer.oci.client import RegistryClient, RetryPolicy
from support.proxy import (
    Answer,
    CutAfter,
    Rewrite,
    login_then_redirect_blobs,
    proxy,
    self_signed_certificate,
)
from support.registry import LocalRegistry, running_registry

BLOB = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class Recorder:
    """Observer that keeps (method, url, status) of every response."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, method: str, url: str, status: int) -> None:
        self.calls.append((method, url, status))

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.calls]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def fast_client(
    host: str, sleeps: Sleeps | None = None, observer: Recorder | None = None
) -> RegistryClient:
    """An anonymous plain-HTTP client whose waits are recorded instead of slept."""
    retry = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02, sleep=sleeps or Sleeps())
    return RegistryClient(
        host,
        plain_http=True,
        credentials=StaticCredentials(None),
        retry=retry,
        observer=observer,
    )


@contextlib.contextmanager
def debug_log(name: str) -> Iterator[list[str]]:
    """Every record of logger ``name`` at DEBUG, formatted, whatever else configured logging."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def manifest_json(config_digest: str, config_size: int, media_type: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [],
        }
    ).encode()


def test_a_monolithic_upload_stores_the_blob_under_its_sha256(registry: LocalRegistry) -> None:
    client = registry.client()
    assert client.push_blob("client/mono", BLOB) == BLOB_DIGEST
    assert client.get_blob("client/mono", BLOB_DIGEST) == BLOB


def test_a_chunked_upload_stores_the_same_bytes(registry: LocalRegistry) -> None:
    recorder = Recorder()
    client = registry.client(observer=recorder)
    client.push_blob("client/chunked", BLOB, chunk_size=1024 * 1024)
    assert recorder.methods().count("PATCH") == 4
    assert client.get_blob("client/chunked", BLOB_DIGEST) == BLOB


def test_a_blob_the_repository_has_is_not_uploaded_again(registry: LocalRegistry) -> None:
    registry.client().push_blob("client/again", BLOB)
    recorder = Recorder()
    registry.client(observer=recorder).push_blob("client/again", BLOB)
    assert recorder.methods() == ["HEAD"]


def test_a_cross_repository_mount_copies_no_bytes(registry: LocalRegistry) -> None:
    registry.client().push_blob("client/source", BLOB)
    recorder = Recorder()
    client = registry.client(observer=recorder)
    client.push_blob("client/mounted", BLOB, mount_from="client/source")
    assert [(m, s) for m, _, s in recorder.calls] == [("HEAD", 404), ("POST", 201)]
    assert client.blob_size("client/mounted", BLOB_DIGEST) == len(BLOB)


def test_mount_blob_links_a_blob_of_another_repository(registry: LocalRegistry) -> None:
    registry.client().push_blob("client/mount-from", BLOB)
    recorder = Recorder()
    client = registry.client(observer=recorder)
    assert client.mount_blob("client/mount-to", BLOB_DIGEST, "client/mount-from")
    assert [(m, s) for m, _, s in recorder.calls] == [("POST", 201)]
    assert client.get_blob("client/mount-to", BLOB_DIGEST) == BLOB


def test_copy_blob_mounts_when_the_registry_can(registry: LocalRegistry) -> None:
    registry.client().push_blob("client/copy-from", BLOB)
    recorder = Recorder()
    client = registry.client(observer=recorder)
    assert client.copy_blob("client/copy-to", BLOB_DIGEST, "client/copy-from") == "mounted"
    assert "PATCH" not in recorder.methods()
    assert client.copy_blob("client/copy-to", BLOB_DIGEST, "client/copy-from") == "present"


def test_copy_blob_streams_the_blob_across_when_the_registry_declines_the_mount(
    registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy drops the mount query, so the registry opens a plain upload session (202),
    as a registry that will not mount does; the client cancels it and streams the blob."""
    monkeypatch.setattr(client_module, "UPLOAD_PART_SIZE", 1024 * 1024)
    registry.client().push_blob("client/decline-from", BLOB)

    def decline(method: str, path: str, headers: dict[str, str]) -> Rewrite | None:
        return Rewrite(path.partition("?")[0]) if "mount=" in path else None

    recorder = Recorder()
    with proxy(registry.host, decline) as front:
        client = registry.client(observer=recorder, via=front.host)
        how = client.copy_blob("client/decline-to", BLOB_DIGEST, "client/decline-from")
    assert how == "streamed"
    methods = recorder.methods()
    assert methods.count("DELETE") == 1  # the declined mount's session, cancelled
    assert methods.count("PATCH") == 4  # 3 MiB + 17 bytes in 1 MiB parts
    stored = registry.client().get_blob("client/decline-to", BLOB_DIGEST)
    assert hashlib.sha256(stored).hexdigest() == BLOB_DIGEST.removeprefix("sha256:")


def test_a_range_read_returns_exactly_the_bytes_asked_for(registry: LocalRegistry) -> None:
    client = registry.client()
    client.push_blob("client/range", BLOB)
    assert (
        client.get_blob_range("client/range", BLOB_DIGEST, 1000, 1_500_123) == BLOB[1000:1_500_123]
    )


def test_streaming_yields_chunks_no_larger_than_asked(registry: LocalRegistry) -> None:
    client = registry.client()
    client.push_blob("client/chunks", BLOB)
    chunks = list(client.stream_blob("client/chunks", BLOB_DIGEST, chunk_size=65536))
    assert max(len(c) for c in chunks) == 65536
    assert b"".join(chunks) == BLOB


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_a_manifest_reads_back_with_its_media_type_and_digest(
    registry: LocalRegistry, media_type: str
) -> None:
    client = registry.client()
    config = b"{}"
    client.push_blob("client/manifests", config)
    body = manifest_json("sha256:" + hashlib.sha256(config).hexdigest(), 2, media_type)
    client.put_manifest("client/manifests", "v1", body, media_type)
    fetched = client.get_manifest("client/manifests", "v1")
    assert (fetched.data, fetched.media_type) == (body, media_type)
    assert fetched.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    assert client.head_manifest("client/manifests", "v1") == fetched.digest


def test_a_manifest_whose_blob_the_registry_does_not_see_yet_is_put_again(
    registry: LocalRegistry,
) -> None:
    """docker-registry answers MANIFEST_BLOB_UNKNOWN while another writer rewrites the
    blob's link; the PUT is repeated rather than failing the whole image."""
    client = registry.client()
    config = b'{"race": true}'
    client.push_blob("client/blob-race", config)
    body = manifest_json("sha256:" + hashlib.sha256(config).hexdigest(), len(config), OCI_MANIFEST)
    unknown = json.dumps(
        {"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry"}]}
    ).encode()
    refusals = [Answer(400, {"Content-Type": "application/json"}, unknown)] * 2

    def not_yet(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if method == "PUT" and "/manifests/" in path and refusals:
            return refusals.pop()
        return None

    sleeps, recorder = Sleeps(), Recorder()
    with proxy(registry.host, not_yet) as front:
        client_via_proxy = fast_client(front.host, sleeps, recorder)
        client_via_proxy.put_manifest("client/blob-race", "v1", body, OCI_MANIFEST)
    assert [status for method, _, status in recorder.calls if method == "PUT"] == [400, 400, 201]
    assert len(sleeps.waits) == 2
    assert client.get_manifest("client/blob-race", "v1").data == body


def test_a_manifest_whose_blob_is_missing_fails_after_the_retries(registry: LocalRegistry) -> None:
    never_pushed = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    body = manifest_json(never_pushed, 12, OCI_MANIFEST)
    sleeps = Sleeps()
    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN") as caught:
        fast_client(registry.host, sleeps).put_manifest("client/missing", "v1", body, OCI_MANIFEST)
    assert caught.value.status == 400
    assert len(sleeps.waits) == 3  # four attempts
    assert registry.client().head_manifest("client/missing", "v1") is None


def test_a_manifest_the_registry_calls_invalid_is_not_retried(registry: LocalRegistry) -> None:
    sleeps = Sleeps()
    with pytest.raises(RegistryError, match="MANIFEST_INVALID"):
        fast_client(registry.host, sleeps).put_manifest(
            "client/invalid", "v1", b'{"schemaVersion": 2, "layers": 7}', OCI_MANIFEST
        )
    assert sleeps.waits == []


def test_a_missing_tag_resolves_to_none(registry: LocalRegistry) -> None:
    assert registry.client().head_manifest("client/manifests", "no-such-tag") is None


def test_a_missing_manifest_is_a_registry_error_with_status_404(registry: LocalRegistry) -> None:
    with pytest.raises(RegistryError) as caught:
        registry.client().get_manifest("client/none", "latest")
    assert caught.value.status == 404


def test_tag_listing_returns_every_tag(registry: LocalRegistry) -> None:
    client = registry.client()
    config = b"{}"
    client.push_blob("client/tags", config)
    body = manifest_json("sha256:" + hashlib.sha256(config).hexdigest(), 2, OCI_MANIFEST)
    for tag in ("a", "b", "c"):
        client.put_manifest("client/tags", tag, body, OCI_MANIFEST)
    assert sorted(client.list_tags("client/tags")) == ["a", "b", "c"]


def test_tag_listing_follows_link_pagination(registry: LocalRegistry) -> None:
    """docker-registry 2.8 ignores ``n`` for tags; the proxy pages like newer registries."""

    def paginate(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if "/tags/list" not in path:
            return None
        if "last=b" in path:
            return Answer(200, body=b'{"name":"client/paged","tags":["c"]}')
        link = '</v2/client/paged/tags/list?n=2&last=b>; rel="next"'
        return Answer(200, {"Link": link}, b'{"name":"client/paged","tags":["a","b"]}')

    with proxy(registry.host, paginate) as front:
        assert fast_client(front.host).list_tags("client/paged", page_size=2) == ["a", "b", "c"]
    assert [path for _, path in front.requests] == [
        "/v2/client/paged/tags/list?n=2",
        "/v2/client/paged/tags/list?n=2&last=b",
    ]


def test_a_registry_without_the_referrers_api_is_reported_as_such(
    registry: LocalRegistry,
) -> None:
    assert registry.client().referrers("client/tags", BLOB_DIGEST) is None


def test_a_dropped_blob_download_resumes_without_gap_or_duplicate(
    registry: LocalRegistry,
) -> None:
    registry.client().push_blob("client/resume", BLOB)
    cuts = [1_234_567, 100_001]

    def cut_blob_gets(method: str, path: str, headers: dict[str, str]) -> CutAfter | None:
        if method == "GET" and "/blobs/sha256:" in path and cuts:
            return CutAfter(cuts.pop(0))
        return None

    with proxy(registry.host, cut_blob_gets) as front:
        recorder = Recorder()
        client = fast_client(front.host, observer=recorder)
        data = b"".join(client.stream_blob("client/resume", BLOB_DIGEST, chunk_size=300_000))
    assert data == BLOB
    assert [status for _, _, status in recorder.calls] == [200, 206, 206]


def test_a_429_waits_as_long_as_retry_after_says(registry: LocalRegistry) -> None:
    throttled = [True]

    def throttle_once(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if throttled:
            throttled.pop()
            return Answer(429, {"Retry-After": "7"})
        return None

    sleeps = Sleeps()
    with proxy(registry.host, throttle_once) as front:
        fast_client(front.host, sleeps).ping()
    assert sleeps.waits == [7.0]


def test_server_errors_are_retried_with_growing_backoff(registry: LocalRegistry) -> None:
    failures = [503, 502, 500]

    def fail_three_times(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        return Answer(failures.pop(0)) if failures else None

    sleeps = Sleeps()
    with proxy(registry.host, fail_three_times) as front:
        fast_client(front.host, sleeps).ping()
    assert len(sleeps.waits) == 3
    assert sleeps.waits[0] <= 0.01 <= sleeps.waits[2]


def test_a_retry_that_would_wait_past_the_deadline_fails_at_once(registry: LocalRegistry) -> None:
    sleeps = Sleeps()
    with proxy(registry.host, lambda *_: Answer(429, {"Retry-After": "30"})) as front:
        client = fast_client(front.host, sleeps).with_deadline(time.monotonic() + 10)
        with pytest.raises(DeadlineExceeded, match="Retry-After"):
            client.ping()
    assert sleeps.waits == []


def test_a_blob_that_stalls_past_the_deadline_fails_with_deadline_exceeded(
    registry: LocalRegistry,
) -> None:
    registry.client().push_blob("client/stalled", BLOB)

    def stall_blob_gets(method: str, path: str, headers: dict[str, str]) -> CutAfter | None:
        if method == "GET" and "/blobs/sha256:" in path:
            return CutAfter(100_000, "stall", stall_seconds=4)
        return None

    with proxy(registry.host, stall_blob_gets) as front:
        # the socket timeout (60 s) is far off: only the deadline can end the stall early
        client = fast_client(front.host).with_deadline(time.monotonic() + 1)
        with pytest.raises(DeadlineExceeded):
            client.get_blob("client/stalled", BLOB_DIGEST)
        assert front.requests == [("GET", f"/v2/client/stalled/blobs/{BLOB_DIGEST}")]


def test_a_server_error_that_persists_becomes_a_registry_error(registry: LocalRegistry) -> None:
    with (
        proxy(registry.host, lambda *_: Answer(503)) as front,
        pytest.raises(RegistryError) as caught,
    ):
        fast_client(front.host).get_manifest("client/x", "latest")
    assert caught.value.status == 503


def test_an_unreachable_registry_is_a_registry_error() -> None:
    from support.registry import free_port

    with pytest.raises(RegistryError, match="after 4 attempts"):
        fast_client(f"127.0.0.1:{free_port()}").ping()


def test_an_answer_whose_body_breaks_off_is_asked_for_again(registry: LocalRegistry) -> None:
    client = registry.client()
    config = b'{"architecture": "amd64", "os": "linux"}'
    client.push_blob("client/cut-manifest", config)
    body = manifest_json("sha256:" + hashlib.sha256(config).hexdigest(), len(config), OCI_MANIFEST)
    client.put_manifest("client/cut-manifest", "v1", body, OCI_MANIFEST)
    cuts = [CutAfter(10)]

    def cut_first_manifest_get(method: str, path: str, headers: dict[str, str]) -> CutAfter | None:
        return cuts.pop() if method == "GET" and "/manifests/" in path and cuts else None

    with proxy(registry.host, cut_first_manifest_get) as front:
        assert fast_client(front.host).get_manifest("client/cut-manifest", "v1").data == body
    assert not cuts


def test_closing_the_client_closes_the_connections_every_thread_opened(
    registry: LocalRegistry,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with registry.client() as client:
            workers = [threading.Thread(target=client.ping) for _ in range(3)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            client.ping()
        del client, workers
        gc.collect()
    assert [str(w.message) for w in caught if "unclosed" in str(w.message)] == []


@pytest.mark.parametrize(
    "read",
    [
        lambda client: client.blob_size("client/x", BLOB_DIGEST),
        lambda client: client.get_blob("client/x", BLOB_DIGEST),
    ],
    ids=["HEAD", "GET"],
)
def test_a_blob_answer_with_a_garbled_length_is_a_registry_error(
    registry: LocalRegistry, read: Callable[[RegistryClient], object]
) -> None:
    def garble_blob_lengths(verb: str, path: str, headers: dict[str, str]) -> Answer | None:
        return Answer(200, {"Content-Length": "lots"}) if "/blobs/" in path else None

    with (
        proxy(registry.host, garble_blob_lengths) as front,
        pytest.raises(RegistryError, match="Content-Length"),
    ):
        read(fast_client(front.host))


def test_https_is_the_default_and_refuses_a_plain_http_registry(registry: LocalRegistry) -> None:
    client = RegistryClient(
        registry.host,
        credentials=StaticCredentials(None),
        retry=RetryPolicy(attempts=1, sleep=Sleeps()),
    )
    with pytest.raises(RegistryError):
        client.ping()


def test_errors_never_show_the_query_of_a_redirect_target(registry: LocalRegistry) -> None:
    def redirect_to_signed_url(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if "/blobs/" in path and "Signature" not in path:
            return Answer(307, {"Location": "/signed/blob?X-Amz-Signature=topsecret"})
        if "Signature" in path:
            return Answer(403)
        return None

    with (
        proxy(registry.host, redirect_to_signed_url) as front,
        pytest.raises(RegistryError) as caught,
    ):
        fast_client(front.host).get_blob("client/x", BLOB_DIGEST)
    assert caught.value.status == 403
    assert "topsecret" not in str(caught.value)
    assert caught.value.url == f"http://{front.host}/v2/client/x/blobs/{BLOB_DIGEST}"


def test_a_redirect_from_https_to_plain_http_is_refused(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with proxy(registry.host, lambda *_: None) as plain:

        def downgrade(method: str, path: str, headers: dict[str, str]) -> Answer | None:
            return Answer(307, {"Location": f"http://{plain.host}{path}"})

        with proxy(registry.host, downgrade, tls=(cert, key)) as secure:
            client = RegistryClient(
                secure.host, credentials=StaticCredentials(None), retry=RetryPolicy(sleep=Sleeps())
            )
            with pytest.raises(RegistryError, match="from https to http"):
                client.get_blob("client/x", BLOB_DIGEST)
    assert plain.requests == []


def test_a_blob_redirected_to_another_host_is_fetched_without_our_credentials(
    registry: LocalRegistry,
) -> None:
    registry.client().push_blob("client/redirected", BLOB)
    seen: list[dict[str, str]] = []

    def storage(method: str, path: str, headers: dict[str, str]) -> None:
        seen.append(headers)

    with (
        proxy(registry.host, storage) as elsewhere,
        proxy(registry.host, login_then_redirect_blobs(LOGIN.basic(), elsewhere.host)) as front,
    ):
        client = RegistryClient(front.host, plain_http=True, credentials=StaticCredentials(LOGIN))
        assert client.get_blob("client/redirected", BLOB_DIGEST) == BLOB
    assert len(seen) == 1
    assert not {name.lower() for name in seen[0]} & {"authorization", "cookie"}


# ---- authentication ------------------------------------------------------------------------

LOGIN = Credentials("builder", "s3cret-pass")


@pytest.fixture(scope="module")
def locked_registry() -> object:
    with running_registry(login=LOGIN) as running:
        yield running


def test_basic_auth_with_the_right_login_pushes_and_pulls(locked_registry: LocalRegistry) -> None:
    client = locked_registry.client()
    client.push_blob("auth/basic", BLOB)
    assert client.get_blob_range("auth/basic", BLOB_DIGEST, 0, 10) == BLOB[:10]


def test_basic_auth_with_a_wrong_password_is_an_auth_error(locked_registry: LocalRegistry) -> None:
    client = locked_registry.client(credentials=Credentials("builder", "wrong"))
    with pytest.raises(AuthError) as caught:
        client.head_manifest("auth/basic", "latest")
    assert "wrong" not in str(caught.value)


def test_a_registry_that_wants_a_login_we_lack_is_an_auth_error(
    locked_registry: LocalRegistry,
) -> None:
    with pytest.raises(AuthError, match="wants a login"):
        fast_client(locked_registry.host).ping()


def test_token_auth_fetches_a_bearer_token_for_the_repository_scope(
    registry: LocalRegistry,
) -> None:
    registry.client().push_blob("auth/token", BLOB)
    scopes: list[str] = []
    realm: list[str] = []
    basic = "Basic " + base64.b64encode(b"builder:s3cret-pass").decode()

    def token_service(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if path.startswith("/token"):
            if headers.get("Authorization") != basic:
                return Answer(401)
            scopes.append(path)
            return Answer(200, body=json.dumps({"token": "tok-123", "expires_in": 300}).encode())
        if headers.get("Authorization") != "Bearer tok-123":
            challenge = f'Bearer realm="{realm[0]}",service="test-registry"'
            return Answer(401, {"WWW-Authenticate": challenge})
        return None

    with proxy(registry.host, token_service) as front:
        realm.append(f"http://{front.host}/token")
        client = RegistryClient(front.host, plain_http=True, credentials=StaticCredentials(LOGIN))
        with debug_log("soci_indexer.oci.client") as lines:
            assert client.get_blob("auth/token", BLOB_DIGEST) == BLOB
            assert client.blob_size("auth/token", BLOB_DIGEST) == len(BLOB)
    assert scopes == ["/token?service=test-registry&scope=repository%3Aauth%2Ftoken%3Apull"]
    assert lines  # the client did log its requests...
    assert not [line for line in lines if "tok-123" in line or "s3cret" in line]  # ...no secret


def test_a_token_service_that_refuses_connections_is_a_registry_error(
    registry: LocalRegistry,
) -> None:
    from support.registry import free_port

    realm = f"http://127.0.0.1:{free_port()}/token"

    def challenge(method: str, path: str, headers: dict[str, str]) -> Answer:
        return Answer(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'})

    with proxy(registry.host, challenge) as front, pytest.raises(RegistryError) as caught:
        fast_client(front.host).ping()
    assert caught.value.url == realm
