"""``ensure_soci_image``: the SOCI-enabled image of an image, built only when missing.

Against a real docker-registry. Expected digests are hashed from what the
registry serves (``LocalRegistry.served_digest``), never taken from the code under test.
"""

from __future__ import annotations

import threading

import pytest
from soci_indexer.errors import ImageNotFound, NothingToIndex, TagMoved
from soci_indexer.pipeline import IndexOptions, ensure_soci_image
from support.images import Blob, PlatformImage, PushedImage, gzip_tar_layer, push_image
from support.registry import LocalRegistry

OPTIONS = IndexOptions(min_layer_size=256 * 1024, span_size=512 * 1024, max_workers=2)
V1 = IndexOptions(
    index_version="v1", min_layer_size=256 * 1024, span_size=512 * 1024, max_workers=2
)

BIG = gzip_tar_layer(1.5, seed=51)
NEWER = gzip_tar_layer(1.5, seed=52)
SMALL = gzip_tar_layer(0.05, seed=53)


def push(registry: LocalRegistry, repository: str, *layers: Blob) -> PushedImage:
    return push_image(
        registry.client(), repository, "v1", [PlatformImage("linux", "amd64", layers)]
    )


class LayerReads:
    """A request observer counting GETs of layer blobs."""

    def __init__(self, *layers: Blob) -> None:
        self.digests = {layer.digest for layer in layers}
        self.count = 0
        self.requests = 0

    def __call__(self, method: str, url: str, status: int) -> None:
        self.requests += 1
        if method == "GET" and "/blobs/" in url and url.rsplit("/", 1)[-1] in self.digests:
            self.count += 1


def test_ensure_builds_the_soci_enabled_image_and_names_it_by_digest(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "ensure/build", BIG)
    ensured = ensure_soci_image(registry.client(), "ensure/build", "v1", OPTIONS)
    soci = registry.served_digest("ensure/build", "v1-soci")
    assert ensured.built
    assert (ensured.source_digest, ensured.soci_digest) == (pushed.digest, soci)
    assert ensured.reference == f"{registry.host}/ensure/build@{soci}"


def test_ensure_of_an_indexed_image_returns_the_same_image_without_reading_a_layer(
    registry: LocalRegistry,
) -> None:
    push(registry, "ensure/again", BIG)
    first = ensure_soci_image(registry.client(), "ensure/again", "v1", OPTIONS)
    reads = LayerReads(BIG)
    again = ensure_soci_image(registry.client(observer=reads), "ensure/again", "v1", OPTIONS)
    assert not again.built
    assert (again.source_digest, again.soci_digest, again.reference) == (
        first.source_digest,
        first.soci_digest,
        first.reference,
    )
    assert reads.requests > 0  # the observer saw the run's manifest reads
    assert reads.count == 0


def test_ensure_v1_names_the_original_image_which_binds_through_referrers(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "ensure/v1", BIG)
    ensured = ensure_soci_image(registry.client(), "ensure/v1", "v1", V1)
    assert ensured.built
    assert ensured.soci_digest == ensured.source_digest == pushed.digest
    assert ensured.reference == f"{registry.host}/ensure/v1@{pushed.digest}"


def test_ensure_of_a_missing_tag_raises_image_not_found(registry: LocalRegistry) -> None:
    push(registry, "ensure/missing", BIG)
    with pytest.raises(ImageNotFound, match="no-such-tag"):
        ensure_soci_image(registry.client(), "ensure/missing", "no-such-tag", OPTIONS)


def test_ensure_of_an_image_without_an_indexable_layer_raises_nothing_to_index(
    registry: LocalRegistry,
) -> None:
    push(registry, "ensure/small", SMALL)
    with pytest.raises(NothingToIndex, match="skipped-too-small"):
        ensure_soci_image(registry.client(), "ensure/small", "v1", OPTIONS)


def test_ensure_of_a_tag_moved_during_the_run_raises_tag_moved(registry: LocalRegistry) -> None:
    push(registry, "ensure/moved", BIG)
    moved = threading.Event()

    def move(layer: str, done: int, total: int) -> None:
        if not moved.is_set():
            moved.set()
            push(registry, "ensure/moved", NEWER)

    with pytest.raises(TagMoved):
        ensure_soci_image(registry.client(), "ensure/moved", "v1", OPTIONS, progress=move)
