"""``copy_image`` and ``ensure_soci_image_in``: the SOCI-enabled image written to another
repository than the source image's.

Against a real docker-registry, which mounts blobs across repositories. Expected digests
are hashed from what the registry serves, never taken from the code under test.
"""

from __future__ import annotations

import pytest
from soci_indexer import verify
from soci_indexer.errors import ImageNotFound
from soci_indexer.pipeline import (
    IndexOptions,
    copy_image,
    ensure_soci_image_in,
    find_soci_image,
)
from support.images import PlatformImage, PushedImage, gzip_tar_layer, push_image
from support.registry import LocalRegistry

OPTIONS = IndexOptions(min_layer_size=256 * 1024, span_size=512 * 1024, max_workers=2)
AMD = gzip_tar_layer(1.5, seed=61)
ARM = gzip_tar_layer(1.5, seed=62)


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, method: str, url: str, status: int) -> None:
        self.seen.append((method, url, status))

    def count(self, method: str, status: int | None = None) -> int:
        return sum(1 for m, _, s in self.seen if m == method and status in (None, s))


def push_two_platforms(registry: LocalRegistry, repository: str) -> PushedImage:
    images = [
        PlatformImage("linux", "amd64", (AMD,)),
        PlatformImage("linux", "arm64", (ARM,), variant="v8"),
    ]
    return push_image(registry.client(), repository, "v1", images)


def test_copy_image_copies_the_index_and_its_manifests_by_digest_mounting_the_blobs(
    registry: LocalRegistry,
) -> None:
    pushed = push_two_platforms(registry, "copy/source")
    calls = Calls()
    copied = copy_image(registry.client(observer=calls), "copy/source", "v1", "copy/target")
    assert copied.digest == pushed.digest
    assert registry.served_digest("copy/target", pushed.digest) == pushed.digest
    for digest in pushed.manifests.values():
        assert registry.served_digest("copy/target", digest) == digest
    assert (copied.mounted, copied.streamed) == (4, 0)  # two layers, two configs
    assert calls.count("PATCH") == 0  # not a byte of a blob was uploaded
    assert registry.client().head_manifest("copy/target", "v1") is None  # no tag written


def test_copying_an_image_the_target_has_costs_one_request_per_repository(
    registry: LocalRegistry,
) -> None:
    push_two_platforms(registry, "copy/again-source")
    copy_image(registry.client(), "copy/again-source", "v1", "copy/again-target")
    calls = Calls()
    copy_image(registry.client(observer=calls), "copy/again-source", "v1", "copy/again-target")
    assert [(m, s) for m, _, s in calls.seen] == [("HEAD", 200), ("HEAD", 200)]


def test_copying_a_missing_tag_raises_image_not_found(registry: LocalRegistry) -> None:
    push_two_platforms(registry, "copy/missing")
    with pytest.raises(ImageNotFound, match="nope"):
        copy_image(registry.client(), "copy/missing", "nope", "copy/missing-target")


def test_ensure_in_another_repository_tags_the_output_there_after_the_source_tag(
    registry: LocalRegistry,
) -> None:
    pushed = push_two_platforms(registry, "copy/ensure-source")
    client = registry.client()
    assert find_soci_image(client, "copy/ensure-target", f"v1@{pushed.digest}", OPTIONS) is None
    ensured = ensure_soci_image_in(
        client, "copy/ensure-source", "v1", "copy/ensure-target", OPTIONS
    )
    soci = registry.served_digest("copy/ensure-target", "v1-soci")
    assert ensured.built
    assert (ensured.source_digest, ensured.soci_digest) == (pushed.digest, soci)
    assert ensured.reference == f"{registry.host}/copy/ensure-target@{soci}"
    assert client.head_manifest("copy/ensure-source", "v1-soci") is None  # source only read
    report = verify.verify_image(client, "copy/ensure-target", "v1-soci")
    assert report.ok
    assert {check.layer.digest for check in report.layers} == {AMD.digest, ARM.digest}
    found = find_soci_image(client, "copy/ensure-target", f"v1@{pushed.digest}", OPTIONS)
    assert found is not None
    assert (found.soci_digest, found.built) == (soci, False)
