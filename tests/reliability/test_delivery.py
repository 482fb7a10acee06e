"""Delivery semantics: what SQS and EventBridge really do, against a real registry.

EventBridge delivers at least once, SQS may hand the same message to two
workers, and every push the builder makes raises events of its own. The
handler must turn all of that into one consistent SOCI-enabled image.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import pytest
from soci_indexer.aws import handler
from soci_indexer.aws.config import HandlerConfig
from soci_indexer.aws.handler import process_event
from soci_indexer.pipeline import IndexOptions, index_image
from support.images import PlatformImage, PushedImage, gzip_tar_layer, push_image, tar_layer
from support.lambda_shapes import FakeContext, load_event, sqs_batch
from support.registry import LocalRegistry

pytestmark = pytest.mark.registry
SOCI_INDEX_ARTIFACT = "application/vnd.amazon.soci.index.v2+json"


@pytest.fixture
def config() -> HandlerConfig:
    options = replace(handler.CONFIG.index_options, min_layer_size=0, span_size=65536)
    return replace(handler.CONFIG, index_options=options)


def two_platform_image(seed: int) -> list[PlatformImage]:
    return [
        PlatformImage("linux", "amd64", (gzip_tar_layer(1.5, seed), tar_layer(0.5, seed + 1))),
        PlatformImage("linux", "arm64", (gzip_tar_layer(1.5, seed + 2),)),
    ]


def push_event(
    pushed: PushedImage,
    *,
    digest: str | None = None,
    tag: str | None = None,
    artifact: str | None = None,
) -> dict[str, Any]:
    event = load_event("push-tagged")
    event["detail"].update(
        {
            "repository-name": pushed.repository,
            "image-digest": digest or pushed.digest,
            "image-tag": pushed.tag if tag is None else tag,
        }
    )
    if artifact:
        event["detail"]["artifact-media-type"] = artifact
    return event


class CountingClients:
    """One fresh loopback client per worker, counting the blob reads (index builds)."""

    def __init__(self, registry: LocalRegistry) -> None:
        self.registry = registry
        self.blob_reads = 0
        self.writes = 0
        self._lock = threading.Lock()

    def _observe(self, method: str, url: str, status: int) -> None:
        with self._lock:
            if method == "GET" and "/blobs/sha256:" in url:
                self.blob_reads += 1
            if method in ("PUT", "POST", "PATCH"):
                self.writes += 1

    def __call__(self, account: str, region: str) -> Any:
        return self.registry.client(observer=self._observe)


def test_two_workers_indexing_the_same_image_at_once_agree(
    registry: LocalRegistry, config: HandlerConfig
) -> None:
    pushed = push_image(registry.client(), "delivery/race", "v1", two_platform_image(11))
    event = json.dumps(push_event(pushed))
    results: list[dict[str, object]] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        clients = CountingClients(registry)
        results.append(
            process_event(sqs_batch(event), FakeContext(), client_factory=clients, config=config)
        )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [{"batchItemFailures": []}] * 2
    tagged = registry.client().head_manifest("delivery/race", "v1-soci")
    # A third, independent run over the same image computes the same digest.
    again = index_image(registry.client(), "delivery/race", "v1", config.index_options)
    assert again.output_reference is not None
    assert again.output_reference.endswith(f"@{tagged}")
    assert registry.client().head_manifest("delivery/race", "v1") == pushed.digest


def test_the_same_event_delivered_many_times_builds_once(
    registry: LocalRegistry, config: HandlerConfig
) -> None:
    pushed = push_image(registry.client(), "delivery/repeat", "v1", two_platform_image(21))
    clients = CountingClients(registry)
    first = process_event(
        sqs_batch(json.dumps(push_event(pushed))),
        FakeContext(),
        client_factory=clients,
        config=config,
    )
    assert first == {"batchItemFailures": []}
    reads_for_one_build = clients.blob_reads
    tagged = registry.client().head_manifest("delivery/repeat", "v1-soci")

    repeats = sqs_batch(*[json.dumps(push_event(pushed))] * 5)
    assert process_event(repeats, FakeContext(), client_factory=clients, config=config) == {
        "batchItemFailures": []
    }
    assert reads_for_one_build > 0
    assert clients.blob_reads == reads_for_one_build, "a repeat delivery rebuilt an index"
    assert registry.client().head_manifest("delivery/repeat", "v1-soci") == tagged


def test_a_storm_of_the_builders_own_events_builds_nothing(
    registry: LocalRegistry, config: HandlerConfig
) -> None:
    """Everything one indexing run pushes raises an event; none may start another build."""
    pushed = push_image(registry.client(), "delivery/storm", "v1", two_platform_image(31))
    clients = CountingClients(registry)
    process_event(
        sqs_batch(json.dumps(push_event(pushed))),
        FakeContext(),
        client_factory=clients,
        config=config,
    )
    client = registry.client()
    output = json.loads(client.get_manifest("delivery/storm", "v1-soci").data)
    storm = [
        push_event(pushed, digest=client.head_manifest("delivery/storm", "v1-soci"), tag="v1-soci")
    ]
    for descriptor in output["manifests"]:
        artifact = descriptor.get("artifactType")
        # ECR reports each child of the pushed index as an untagged push.
        storm.append(push_event(pushed, digest=descriptor["digest"], tag="", artifact=artifact))
    for manifest in pushed.manifests.values():  # the source image's own untagged children
        storm.append(push_event(pushed, digest=manifest, tag=""))
    storm = storm * 4  # at-least-once delivery: each arrives several times

    clients.blob_reads = clients.writes = 0
    result = process_event(
        sqs_batch(*map(json.dumps, storm)), FakeContext(), client_factory=clients, config=config
    )
    assert result == {"batchItemFailures": []}
    assert len(storm) >= 4 * 5
    assert (clients.blob_reads, clients.writes) == (0, 0)


def test_an_image_with_a_hundred_layers_on_three_platforms_is_indexed(
    registry: LocalRegistry,
) -> None:
    platforms = []
    for number, architecture in enumerate(("amd64", "arm64", "ppc64le")):
        layers = tuple(gzip_tar_layer(0.03, seed=1000 * number + i, level=1) for i in range(40))
        platforms.append(PlatformImage("linux", architecture, layers))
    pushed = push_image(registry.client(), "delivery/many-layers", "v1", platforms)
    options = IndexOptions(min_layer_size=0, span_size=65536, max_workers=4)

    result = index_image(registry.client(), "delivery/many-layers", "v1", options)

    indexed = [layer for layer in result.layers if layer.status == "indexed"]
    assert len(indexed) == 120
    assert len(result.soci_indexes) == 3
    output = json.loads(registry.client().get_manifest("delivery/many-layers", "v1-soci").data)
    for index_digest in result.soci_indexes:
        soci = json.loads(registry.client().get_manifest("delivery/many-layers", index_digest).data)
        assert len(soci["layers"]) == 40
    assert sum(1 for d in output["manifests"] if d.get("artifactType") == SOCI_INDEX_ARTIFACT) == 3
    assert registry.client().head_manifest("delivery/many-layers", "v1") == pushed.digest
