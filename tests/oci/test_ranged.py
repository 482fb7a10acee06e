"""A blob fetched in ranges over several connections, against the real registry.

docker-registry honours Range; the proxy in front of it plays the rest: a
registry that ignores Range, ECR's redirect of blob reads to a storage host,
a range that breaks off, a range that stalls past the deadline.
"""

from __future__ import annotations

import threading
import time

import pytest
from soci_indexer.engine.build import build_ztoc
from soci_indexer.errors import CorruptLayer, DeadlineExceeded
from soci_indexer.oci.auth import Credentials, StaticCredentials
from soci_indexer.oci.client import RegistryClient, RetryPolicy
from soci_indexer.oci.ranged import stream_blob_ranged
from soci_indexer.pipeline import ImageStatus, IndexOptions, index_image
from support.images import PlatformImage, gzip_tar_layer, push_image
from support.proxy import Answer, CutAfter, login_then_redirect_blobs, proxy
from support.registry import LocalRegistry

pytestmark = pytest.mark.registry

LAYER = gzip_tar_layer(4, seed=41, random_share=0.8)  # about 3.3 MB of gzip
RANGE = 256 * 1024
RANGES = -(-LAYER.size // RANGE)
LOGIN = Credentials("builder", "s3cret-pass")


def _client(host: str, observer: list[tuple[str, str, int]] | None = None) -> RegistryClient:
    return RegistryClient(
        host,
        plain_http=True,
        credentials=StaticCredentials(None),
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
        observer=None if observer is None else lambda *call: observer.append(call),
    )


def _ranged(client: RegistryClient, repository: str, connections: int = 4) -> bytes:
    chunks = stream_blob_ranged(
        client, repository, LAYER.digest, LAYER.size, connections=connections, range_size=RANGE
    )
    return b"".join(chunks)


def _blob_ranges(headers_seen: list[dict[str, str]]) -> list[str]:
    return [value for headers in headers_seen for name, value in headers.items() if name == "Range"]


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry) -> str:
    registry.client().push_blob("ranged/layer", LAYER.data)
    return "ranged/layer"


def test_a_layer_read_in_ranges_gives_the_same_bytes_and_ztoc_as_the_layer_itself(
    registry: LocalRegistry, pushed: str
) -> None:
    calls: list[tuple[str, str, int]] = []
    chunks = stream_blob_ranged(
        _client(registry.host, calls),
        pushed,
        LAYER.digest,
        LAYER.size,
        connections=4,
        range_size=RANGE,
    )
    built = build_ztoc(chunks)
    assert built.data == build_ztoc([LAYER.data]).data  # the zTOC of the bytes themselves
    assert (built.layer_digest, built.layer_size) == (LAYER.digest, LAYER.size)
    assert [status for _, _, status in calls] == [206] * RANGES


def test_at_most_the_connection_count_of_ranges_is_fetched_ahead_of_the_reader(
    registry: LocalRegistry, pushed: str
) -> None:
    started: list[str] = []

    def count(method: str, path: str, headers: dict[str, str]) -> None:
        started.append(headers.get("Range", ""))

    with proxy(registry.host, count) as front:
        chunks = stream_blob_ranged(
            _client(front.host), pushed, LAYER.digest, LAYER.size, connections=3, range_size=RANGE
        )
        read = 0
        most_ahead = 0
        for chunk in chunks:
            read += len(chunk)
            time.sleep(0.02)  # a reader slower than loopback: the fetchers would run ahead
            ranges_reached = -(-read // RANGE)
            most_ahead = max(most_ahead, len(started) - ranges_reached)
    assert read == LAYER.size
    assert len(started) == RANGES
    assert most_ahead == 2  # the range being read and two more: three connections' worth


def test_a_registry_that_ignores_range_is_read_as_one_stream_without_asking_twice(
    registry: LocalRegistry, pushed: str
) -> None:
    def strip_range(method: str, path: str, headers: dict[str, str]) -> None:
        headers.pop("Range", None)

    with proxy(registry.host, strip_range) as front:
        calls: list[tuple[str, str, int]] = []
        data = _ranged(_client(front.host, calls), pushed)
    assert data == LAYER.data
    assert calls == [("GET", f"http://{front.host}/v2/{pushed}/blobs/{LAYER.digest}", 200)]


def test_ranges_follow_the_redirect_to_storage_without_the_registry_login(
    registry: LocalRegistry, pushed: str
) -> None:
    seen_by_storage: list[dict[str, str]] = []
    lock = threading.Lock()

    def storage(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        with lock:
            seen_by_storage.append(dict(headers))
        if "X-Amz-Signature=s" not in path:
            return Answer(403)
        return None

    with (
        proxy(registry.host, storage) as elsewhere,
        proxy(registry.host, login_then_redirect_blobs(LOGIN.basic(), elsewhere.host)) as front,
    ):
        client = RegistryClient(front.host, plain_http=True, credentials=StaticCredentials(LOGIN))
        assert _ranged(client, pushed) == LAYER.data
    assert len(seen_by_storage) == RANGES
    assert sorted(_blob_ranges(seen_by_storage)) == sorted(
        f"bytes={start}-{min(start + RANGE, LAYER.size) - 1}"
        for start in range(0, LAYER.size, RANGE)
    )
    assert all("authorization" not in {name.lower() for name in h} for h in seen_by_storage)


def test_a_range_that_breaks_off_resumes_on_its_own_from_its_first_missing_byte(
    registry: LocalRegistry, pushed: str
) -> None:
    third = f"bytes={3 * RANGE}-{4 * RANGE - 1}"
    cut = [True]
    ranges: list[str] = []

    def break_the_fourth_range_once(
        method: str, path: str, headers: dict[str, str]
    ) -> CutAfter | None:
        ranges.append(headers.get("Range", ""))
        if headers.get("Range") == third and cut:
            cut.pop()
            return CutAfter(100_000, "reset")
        return None

    with proxy(registry.host, break_the_fourth_range_once) as front:
        assert _ranged(_client(front.host), pushed) == LAYER.data
    resumed = [r for r in ranges if r.endswith(f"-{4 * RANGE - 1}") and r != third]
    assert len(resumed) == 1
    first = int(resumed[0].removeprefix("bytes=").split("-")[0])
    assert 3 * RANGE < first <= 3 * RANGE + 100_000
    assert len(ranges) == RANGES + 1  # no other range asked for twice


def test_a_range_that_stalls_past_the_deadline_ends_the_download_at_the_deadline(
    registry: LocalRegistry, pushed: str
) -> None:
    def stall_the_fifth_range(method: str, path: str, headers: dict[str, str]) -> CutAfter | None:
        if headers.get("Range", "").startswith(f"bytes={4 * RANGE}-"):
            return CutAfter(10_000, "stall", stall_seconds=6)
        return None

    with proxy(registry.host, stall_the_fifth_range) as front:
        client = _client(front.host).with_deadline(time.monotonic() + 1.5)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            _ranged(client, pushed)
        assert time.monotonic() - started < 4  # the stall (6 s) and socket timeout (60 s) cut


def test_a_descriptor_longer_than_the_blob_is_a_corrupt_layer_as_for_one_stream(
    registry: LocalRegistry, pushed: str
) -> None:
    chunks = stream_blob_ranged(
        _client(registry.host),
        pushed,
        LAYER.digest,
        LAYER.size + 3 * RANGE,
        connections=4,
        range_size=RANGE,
    )
    with pytest.raises(CorruptLayer, match="fewer bytes than the"):
        b"".join(chunks)


def test_the_pipeline_builds_the_same_ztoc_from_ranges_as_from_one_stream(
    registry: LocalRegistry,
) -> None:
    ztocs = []
    for connections in (1, 4):
        repository = f"ranged/image-{connections}"
        image = [PlatformImage("linux", "amd64", (LAYER,))]
        push_image(registry.client(), repository, "v1", image)
        calls: list[tuple[str, str, int]] = []
        options = IndexOptions(
            min_layer_size=0, span_size=512 * 1024, blob_connections=connections, range_size=RANGE
        )
        result = index_image(_client(registry.host, calls), repository, "v1", options)
        assert result.status is ImageStatus.INDEXED, result.reason
        layer_gets = [status for method, url, status in calls if url.endswith(LAYER.digest)]
        assert layer_gets == ([200] if connections == 1 else [206] * RANGES)
        ztocs.append(result.layers[0].ztoc_digest)
    assert ztocs[0] == ztocs[1]
