"""The indexing pipeline against a real docker-registry.

Layers are small (a few MiB) with ``min_layer_size`` lowered to match, so the
whole module runs in seconds; the default threshold has its own test. Expected
values come from the layer bytes themselves (hashlib, tarfile), never from the
code under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from soci_indexer import settings
from soci_indexer.engine import ztoc
from soci_indexer.errors import DeadlineExceeded, RegistryError
from soci_indexer.oci.client import RegistryClient
from soci_indexer.pipeline import ImageResult, ImageStatus, IndexOptions, LayerStatus, index_image
from support.images import (
    MIB,
    Blob,
    PlatformImage,
    PushedImage,
    corrupt_gzip_layer,
    gzip_tar_layer,
    push_image,
    tar_layer,
    zstd_layer,
)
from support.proxy import Answer, CutAfter, proxy
from support.registry import LocalRegistry

OPTIONS = IndexOptions(min_layer_size=256 * 1024, span_size=512 * 1024, max_workers=2)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SOCI_V2 = "application/vnd.amazon.soci.index.v2+json"
SOCI_V1 = "application/vnd.amazon.soci.index.v1+json"
WRITES = {"PUT", "POST", "PATCH", "DELETE"}

BIG_A = gzip_tar_layer(1.5, seed=1)
BIG_B = gzip_tar_layer(1.5, seed=2, random_share=0.2)
BIG_TAR = tar_layer(1.0, seed=3)
SMALL = gzip_tar_layer(0.05, seed=4)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, method: str, url: str, status: int) -> None:
        self.calls.append((method, url, status))

    def writes(self) -> list[tuple[str, str]]:
        return [(m, url.split("/v2/", 1)[1]) for m, url, _ in self.calls if m in WRITES]

    def reads_of(self, blob: Blob) -> int:
        return sum(1 for m, url, _ in self.calls if m == "GET" and url.endswith(blob.digest))


def manifest(client: RegistryClient, repository: str, reference: str) -> dict[str, object]:
    fetched = client.get_manifest(repository, reference)
    loaded: dict[str, object] = json.loads(fetched.data)
    return loaded


def output_tag(result: ImageResult) -> str:
    assert result.output_reference is not None
    return result.output_reference.split(":", 2)[-1].split("@")[0]


def soci_entries(index: dict[str, object]) -> list[dict[str, object]]:
    return [d for d in index["manifests"] if d.get("artifactType") == SOCI_V2]  # type: ignore[union-attr]


def image_entries(index: dict[str, object]) -> list[dict[str, object]]:
    return [d for d in index["manifests"] if d.get("artifactType") != SOCI_V2]  # type: ignore[union-attr]


def tar_end(tar: bytes) -> int:
    """Where Go's reader stops: after the two zero blocks that follow the last entry."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        last = archive.getmembers()[-1]
    return last.offset_data + -(-last.size // 512) * 512 + 1024


def push(
    registry: LocalRegistry, repository: str, *images: PlatformImage, **kwargs: bool
) -> PushedImage:
    return push_image(registry.client(), repository, "v1", images, **kwargs)


def push_artifact(
    client: RegistryClient, repository: str, tag: str | None, config_media_type: str
) -> tuple[bytes, str]:
    """Push a layerless OCI manifest whose config is not an image's (a signature, an SBOM),
    under ``tag`` or only by its digest; return its bytes and digest."""
    config = json.dumps({"artifact": config_media_type}).encode()
    client.push_blob(repository, config)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config_media_type,
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    client.put_manifest(repository, tag or digest, body, OCI_MANIFEST)
    return body, digest


def amd64(*layers: Blob) -> PlatformImage:
    return PlatformImage("linux", "amd64", layers)


def arm64(*layers: Blob) -> PlatformImage:
    return PlatformImage("linux", "arm64", layers, variant="v8")


# ---- one single-platform image, indexed once, looked at from several sides ------------------


@pytest.fixture(scope="module")
def single(registry: LocalRegistry) -> tuple[PushedImage, ImageResult]:
    pushed = push(registry, "pipeline/single", amd64(SMALL, BIG_A, BIG_TAR))
    return pushed, index_image(registry.client(), "pipeline/single", "v1", OPTIONS)


def test_an_image_with_big_layers_is_indexed_under_the_suffixed_tag(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    _, result = single
    assert result.status is ImageStatus.INDEXED
    digest = registry.client().head_manifest("pipeline/single", "v1-soci")
    assert result.output_reference == f"{registry.host}/pipeline/single:v1-soci@{digest}"


def test_each_layer_is_reported_with_its_fate(single: tuple[PushedImage, ImageResult]) -> None:
    _, result = single
    assert [(layer.digest, layer.status) for layer in result.layers] == [
        (SMALL.digest, LayerStatus.TOO_SMALL),
        (BIG_A.digest, LayerStatus.INDEXED),
        (BIG_TAR.digest, LayerStatus.INDEXED),
    ]


def test_the_original_tag_is_left_alone(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    pushed, _ = single
    assert registry.client().head_manifest("pipeline/single", "v1") == pushed.digest


def test_the_output_index_holds_the_enabled_manifest_and_its_soci_index(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    index = manifest(registry.client(), "pipeline/single", "v1-soci")
    (image,) = image_entries(index)
    (soci,) = soci_entries(index)
    assert index["mediaType"] == OCI_INDEX
    assert image["platform"] == soci["platform"] == {"architecture": "amd64", "os": "linux"}
    assert image["annotations"] == {"com.amazon.soci.index-digest": soci["digest"]}
    assert soci["annotations"] == {"com.amazon.soci.image-manifest-digest": image["digest"]}


def test_the_enabled_manifest_keeps_config_and_layers_and_gains_the_annotation(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    pushed, _ = single
    client = registry.client()
    (image,) = image_entries(manifest(client, "pipeline/single", "v1-soci"))
    enabled = manifest(client, "pipeline/single", str(image["digest"]))
    original = json.loads(pushed.manifest_bytes["linux/amd64"])
    assert enabled["config"] == original["config"]
    assert enabled["layers"] == original["layers"]
    assert set(enabled["annotations"]) == {"com.amazon.soci.index-digest"}  # type: ignore[arg-type]


def test_the_soci_index_lists_one_ztoc_per_big_layer_in_layer_order(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    client = registry.client()
    (soci,) = soci_entries(manifest(client, "pipeline/single", "v1-soci"))
    index = manifest(client, "pipeline/single", str(soci["digest"]))
    assert index["config"] == {
        "mediaType": SOCI_V2,
        "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        "size": 2,
    }
    assert [layer["annotations"] for layer in index["layers"]] == [  # type: ignore[attr-defined]
        {
            "com.amazon.soci.image-layer-digest": blob.digest,
            "com.amazon.soci.image-layer-mediaType": blob.media_type,
            "com.amazon.soci.span-size": str(512 * 1024),
        }
        for blob in (BIG_A, BIG_TAR)
    ]


def test_each_pushed_ztoc_describes_its_layer_sizes(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    client = registry.client()
    _, result = single
    by_layer = {layer.digest: layer.ztoc_digest for layer in result.layers}
    for blob, tar in ((BIG_A, tar_layer(1.5, 1).data), (BIG_TAR, BIG_TAR.data)):
        parsed = ztoc.parse(client.get_blob("pipeline/single", str(by_layer[blob.digest])))
        assert (parsed.compressed_archive_size, parsed.uncompressed_archive_size) == (
            blob.size,
            tar_end(tar),
        )


def test_a_second_run_finds_the_image_indexed_and_writes_nothing(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    _, first = single
    recorder = Recorder()
    again = index_image(registry.client(observer=recorder), "pipeline/single", "v1", OPTIONS)
    assert again.status is ImageStatus.ALREADY_INDEXED
    assert (again.output_reference, again.soci_indexes) == (
        first.output_reference,
        first.soci_indexes,
    )
    assert recorder.writes() == []


def test_a_run_with_another_span_size_indexes_again(
    registry: LocalRegistry, single: tuple[PushedImage, ImageResult]
) -> None:
    _, first = single
    other = index_image(
        registry.client(), "pipeline/single", "v1", replace(OPTIONS, span_size=256 * 1024)
    )
    assert other.status is ImageStatus.INDEXED
    assert other.output_reference != first.output_reference
    index_image(registry.client(), "pipeline/single", "v1", OPTIONS)  # back as it was


def test_the_output_tag_is_the_last_thing_written(registry: LocalRegistry) -> None:
    push(registry, "pipeline/order", amd64(BIG_A, BIG_B))
    recorder = Recorder()
    index_image(registry.client(observer=recorder), "pipeline/order", "v1", OPTIONS)
    writes = recorder.writes()
    assert writes[-1] == ("PUT", "pipeline/order/manifests/v1-soci")
    assert [w for w in writes if "v1-soci" in w[1]] == [writes[-1]]


def test_a_push_failing_midway_leaves_no_output_tag(registry: LocalRegistry) -> None:
    push(registry, "pipeline/broken", amd64(BIG_A))

    def refuse_manifest_writes(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        return Answer(503) if method == "PUT" and "/manifests/" in path else None

    with proxy(registry.host, refuse_manifest_writes) as front:
        client = registry.client(via=front.host)
        with pytest.raises(RegistryError):
            index_image(client, "pipeline/broken", "v1", OPTIONS)
    assert registry.client().head_manifest("pipeline/broken", "v1-soci") is None


def test_a_passed_deadline_stops_before_anything_is_tagged(registry: LocalRegistry) -> None:
    push(registry, "pipeline/late", amd64(BIG_A))
    late = replace(OPTIONS, deadline=time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        index_image(registry.client(), "pipeline/late", "v1", late)
    assert registry.client().head_manifest("pipeline/late", "v1-soci") is None


def _moving_the_tag_once(
    registry: LocalRegistry, repository: str, newer: list[ImageResult] | None = None
) -> Callable[[str, int, int], None]:
    """A progress callback that, while the first layer streams, pushes a newer image to
    ``v1`` (the tag being indexed) and, given a ``newer`` list, indexes it to the end and
    keeps its result there: what a second push of the same tag, handled at once, does."""
    lock = threading.Lock()
    moved: list[bool] = []

    def move(layer: str, done: int, total: int) -> None:
        with lock:
            if moved:
                return
            moved.append(True)
            push(registry, repository, amd64(BIG_B))
            if newer is not None:
                newer.append(index_image(registry.client(), repository, "v1", OPTIONS))

    return move


def test_a_tag_moved_during_the_run_is_not_given_the_older_images_index(
    registry: LocalRegistry,
) -> None:
    push(registry, "pipeline/moved", amd64(BIG_A))
    move = _moving_the_tag_once(registry, "pipeline/moved")
    result = index_image(registry.client(), "pipeline/moved", "v1", OPTIONS, progress=move)
    assert (result.status, result.output_reference) == (ImageStatus.TAG_MOVED, None)
    assert registry.client().head_manifest("pipeline/moved", "v1-soci") is None


def test_a_newer_result_written_while_an_older_run_worked_is_kept(
    registry: LocalRegistry,
) -> None:
    push(registry, "pipeline/raced", amd64(BIG_A))
    newer: list[ImageResult] = []
    move = _moving_the_tag_once(registry, "pipeline/raced", newer)
    index_image(registry.client(), "pipeline/raced", "v1", OPTIONS, progress=move)
    (newer_result,) = newer
    written = registry.client().head_manifest("pipeline/raced", "v1-soci")
    assert f"v1-soci@{written}" in str(newer_result.output_reference)


def test_a_throttle_asking_to_wait_past_the_deadline_ends_the_run_untagged(
    registry: LocalRegistry,
) -> None:
    push(registry, "pipeline/throttled", amd64(BIG_A))

    def throttle_manifest_writes(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if method == "PUT" and "/manifests/" in path:
            return Answer(429, {"Retry-After": "20"})
        return None

    soon = replace(OPTIONS, deadline=time.monotonic() + 15)
    with (
        proxy(registry.host, throttle_manifest_writes) as front,
        pytest.raises(DeadlineExceeded, match="v1-soci was not written"),
    ):
        index_image(registry.client(via=front.host), "pipeline/throttled", "v1", soon)
    assert registry.client().head_manifest("pipeline/throttled", "v1-soci") is None


def test_a_layer_stalled_past_the_deadline_is_not_resumed(registry: LocalRegistry) -> None:
    push(registry, "pipeline/stalled", amd64(BIG_A))

    def stall_layer(method: str, path: str, headers: dict[str, str]) -> CutAfter | None:
        return CutAfter(64 * 1024, "stall", 3) if path.endswith(BIG_A.digest) else None

    soon = replace(OPTIONS, deadline=time.monotonic() + 1)
    with proxy(registry.host, stall_layer) as front:
        with pytest.raises(DeadlineExceeded):
            index_image(registry.client(via=front.host), "pipeline/stalled", "v1", soon)
        layer_reads = [r for r in front.requests if r[1].endswith(BIG_A.digest)]
    assert layer_reads == [("GET", f"/v2/pipeline/stalled/blobs/{BIG_A.digest}")]
    assert registry.client().head_manifest("pipeline/stalled", "v1-soci") is None


def test_when_one_layer_fails_the_others_stop_reading(registry: LocalRegistry) -> None:
    push(registry, "pipeline/sibling", amd64(BIG_A, BIG_B))
    b_started = threading.Event()

    def refuse_a_stall_b(
        method: str, path: str, headers: dict[str, str]
    ) -> Answer | CutAfter | None:
        if path.endswith(BIG_A.digest):
            # Refuse A only once B is reading, so B has something to stop.
            b_started.wait(timeout=10)
            return Answer(403)
        if path.endswith(BIG_B.digest):
            b_started.set()
            return CutAfter(64 * 1024, "stall", 2)
        return None

    with proxy(registry.host, refuse_a_stall_b) as front:
        with pytest.raises(RegistryError) as caught:
            index_image(registry.client(via=front.host), "pipeline/sibling", "v1", OPTIONS)
        b_reads = [r for r in front.requests if r[1].endswith(BIG_B.digest)]
    assert caught.value.status == 403
    assert len(b_reads) == 1  # B stopped at its next chunk: no resume after the stall


# ---- image shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_every_platform_of_a_multi_platform_image_is_indexed(
    registry: LocalRegistry, docker: bool
) -> None:
    repository = f"pipeline/multi-{'docker' if docker else 'oci'}"
    pushed = push(registry, repository, amd64(BIG_A, SMALL), arm64(BIG_B), docker=docker)
    result = index_image(registry.client(), repository, "v1", OPTIONS)
    index = manifest(registry.client(), repository, output_tag(result))
    assert [(e["platform"], e["artifactType"]) for e in soci_entries(index)] == [
        ({"architecture": "amd64", "os": "linux"}, SOCI_V2),
        ({"architecture": "arm64", "os": "linux", "variant": "v8"}, SOCI_V2),
    ]
    assert len(image_entries(index)) == 2
    assert all(e["digest"] not in pushed.manifests.values() for e in image_entries(index))


def test_a_layer_shared_by_two_platforms_is_read_once(registry: LocalRegistry) -> None:
    push(registry, "pipeline/shared", amd64(BIG_A), arm64(BIG_A, BIG_B))
    recorder = Recorder()
    result = index_image(registry.client(observer=recorder), "pipeline/shared", "v1", OPTIONS)
    reads = [url for method, url, _ in recorder.calls if method == "GET" and BIG_A.digest in url]
    assert len(reads) == 1
    shared = [layer.ztoc_digest for layer in result.layers if layer.digest == BIG_A.digest]
    assert len(shared) == 2
    assert shared[0] == shared[1]


def test_docker_manifests_become_oci_manifests_with_docker_layer_types_kept(
    registry: LocalRegistry,
) -> None:
    push(registry, "pipeline/docker-one", amd64(BIG_A), docker=True)
    result = index_image(registry.client(), "pipeline/docker-one", "v1", OPTIONS)
    (image,) = image_entries(manifest(registry.client(), "pipeline/docker-one", output_tag(result)))
    enabled = manifest(registry.client(), "pipeline/docker-one", str(image["digest"]))
    assert enabled["mediaType"] == OCI_MANIFEST
    assert enabled["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"  # type: ignore[index]
    assert enabled["layers"][0]["mediaType"] == (  # type: ignore[index]
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )


def test_asking_for_one_platform_indexes_only_that_one(registry: LocalRegistry) -> None:
    pushed = push(registry, "pipeline/filter", amd64(BIG_A), arm64(BIG_B))
    only_arm = replace(OPTIONS, platforms=("linux/arm64",))
    result = index_image(registry.client(), "pipeline/filter", "v1", only_arm)
    index = manifest(registry.client(), "pipeline/filter", output_tag(result))
    assert [e["platform"]["architecture"] for e in soci_entries(index)] == ["arm64"]  # type: ignore[index]
    assert pushed.manifests["linux/amd64"] in [e["digest"] for e in image_entries(index)]
    assert {layer.platform for layer in result.layers} == {"linux/arm64/v8"}


def test_an_image_of_small_layers_only_writes_nothing(registry: LocalRegistry) -> None:
    push(registry, "pipeline/small", amd64(SMALL))
    recorder = Recorder()
    result = index_image(registry.client(observer=recorder), "pipeline/small", "v1", OPTIONS)
    assert result.status is ImageStatus.NO_QUALIFYING_LAYERS
    assert "1 skipped-too-small" in result.reason
    assert result.output_reference is None
    assert recorder.writes() == []


def test_the_default_minimum_skips_layers_under_ten_mib(registry: LocalRegistry) -> None:
    push(registry, "pipeline/default-min", amd64(BIG_A))
    defaults = IndexOptions(span_size=OPTIONS.span_size)
    result = index_image(registry.client(), "pipeline/default-min", "v1", defaults)
    assert BIG_A.size < settings.DEFAULT_MIN_LAYER_SIZE
    assert result.status is ImageStatus.NO_QUALIFYING_LAYERS


def test_a_layer_of_exactly_the_minimum_size_is_indexed(registry: LocalRegistry) -> None:
    push(registry, "pipeline/exact-min", amd64(BIG_A))
    exact = replace(OPTIONS, min_layer_size=BIG_A.size)
    result = index_image(registry.client(), "pipeline/exact-min", "v1", exact)
    assert [layer.status for layer in result.layers] == [LayerStatus.INDEXED]


def test_a_zstd_layer_is_skipped_and_the_others_are_indexed(registry: LocalRegistry) -> None:
    zstd = zstd_layer(0.5, seed=5)
    push(registry, "pipeline/zstd", amd64(zstd, BIG_A))
    result = index_image(registry.client(), "pipeline/zstd", "v1", OPTIONS)
    assert result.status is ImageStatus.INDEXED
    assert [(layer.status, layer.reason) for layer in result.layers] == [
        (LayerStatus.UNSUPPORTED, "zstd layers cannot be indexed by SOCI"),
        (LayerStatus.INDEXED, ""),
    ]


def test_a_corrupt_layer_is_reported_and_left_out(registry: LocalRegistry) -> None:
    corrupt = corrupt_gzip_layer(1.5, seed=6)
    push(registry, "pipeline/corrupt", amd64(corrupt, BIG_B))
    result = index_image(registry.client(), "pipeline/corrupt", "v1", OPTIONS)
    assert result.status is ImageStatus.INDEXED
    bad, good = result.layers
    assert (bad.status, good.status) == (LayerStatus.CORRUPT, LayerStatus.INDEXED)
    assert bad.reason
    soci = manifest(registry.client(), "pipeline/corrupt", result.soci_indexes[0])
    assert [z["annotations"]["com.amazon.soci.image-layer-digest"] for z in soci["layers"]] == [  # type: ignore[attr-defined]
        BIG_B.digest
    ]


# ---- pushes that are not ours to index -------------------------------------------------------


@pytest.fixture(scope="module")
def indexed_multi(registry: LocalRegistry) -> ImageResult:
    push(registry, "pipeline/own-output", amd64(BIG_A), arm64(BIG_B))
    return index_image(registry.client(), "pipeline/own-output", "v1", OPTIONS)


def skip_of(registry: LocalRegistry, reference: str) -> ImageResult:
    return index_image(registry.client(), "pipeline/own-output", reference, OPTIONS)


def test_a_tag_with_the_suffix_is_our_own_output(
    registry: LocalRegistry, indexed_multi: ImageResult
) -> None:
    assert skip_of(registry, "v1-soci").status is ImageStatus.SOCI_ARTIFACT


def test_an_index_listing_soci_indexes_is_our_own_output(
    registry: LocalRegistry, indexed_multi: ImageResult
) -> None:
    digest = str(indexed_multi.output_reference).rsplit("@", 1)[1]
    assert skip_of(registry, digest).status is ImageStatus.SOCI_ARTIFACT


def test_a_soci_index_manifest_is_our_own_output(
    registry: LocalRegistry, indexed_multi: ImageResult
) -> None:
    result = skip_of(registry, indexed_multi.soci_indexes[0])
    assert (result.status, result.reason) == (
        ImageStatus.SOCI_ARTIFACT,
        "the manifest is a SOCI index",
    )


def test_a_soci_enabled_manifest_is_our_own_output(
    registry: LocalRegistry, indexed_multi: ImageResult
) -> None:
    index = manifest(registry.client(), "pipeline/own-output", output_tag(indexed_multi))
    enabled = str(image_entries(index)[0]["digest"])
    result = skip_of(registry, enabled)
    assert (result.status, result.reason) == (
        ImageStatus.SOCI_ARTIFACT,
        "the manifest is already SOCI-enabled",
    )


def test_an_artifact_that_is_not_an_image_is_skipped(registry: LocalRegistry) -> None:
    client = registry.client()
    push_artifact(client, "pipeline/artifact", "sig", "application/vnd.example.signature+json")
    result = index_image(client, "pipeline/artifact", "sig", OPTIONS)
    assert result.status is ImageStatus.NOT_AN_IMAGE


# ---- v1, on request ------------------------------------------------------------------------


def test_v1_pushes_a_soci_index_with_a_subject_and_a_referrers_fallback_tag(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "pipeline/v1", amd64(BIG_A))
    client = registry.client()
    result = index_image(client, "pipeline/v1", "v1", replace(OPTIONS, index_version="v1"))
    (soci_digest,) = result.soci_indexes
    soci = manifest(client, "pipeline/v1", soci_digest)
    assert soci["subject"] == {
        "mediaType": OCI_MANIFEST,
        "digest": pushed.digest,
        "size": len(pushed.manifest_bytes["linux/amd64"]),
    }
    referrers = manifest(client, "pipeline/v1", pushed.digest.replace(":", "-"))
    assert [(d["digest"], d["artifactType"]) for d in referrers["manifests"]] == [  # type: ignore[attr-defined]
        (soci_digest, SOCI_V1)
    ]
    assert client.head_manifest("pipeline/v1", "v1-soci") is None


V1 = replace(OPTIONS, index_version="v1")


def test_v1_run_twice_reads_and_writes_nothing_the_second_time(registry: LocalRegistry) -> None:
    pushed = push(registry, "pipeline/v1-twice", amd64(BIG_B))
    first = index_image(registry.client(), "pipeline/v1-twice", "v1", V1)
    recorder = Recorder()
    again = index_image(registry.client(observer=recorder), "pipeline/v1-twice", "v1", V1)
    assert again.status is ImageStatus.ALREADY_INDEXED
    assert (again.output_reference, again.soci_indexes) == (
        first.output_reference,
        first.soci_indexes,
    )
    assert (recorder.writes(), recorder.reads_of(BIG_B)) == ([], 0)
    referrers = manifest(registry.client(), "pipeline/v1-twice", pushed.digest.replace(":", "-"))
    assert len(referrers["manifests"]) == 1  # type: ignore[arg-type]


def test_v1_with_another_span_size_indexes_again_beside_the_first(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "pipeline/v1-spans", amd64(BIG_A))
    first = index_image(registry.client(), "pipeline/v1-spans", "v1", V1)
    recorder = Recorder()
    other = index_image(
        registry.client(observer=recorder),
        "pipeline/v1-spans",
        "v1",
        replace(V1, span_size=256 * 1024),
    )
    assert other.status is ImageStatus.INDEXED
    assert recorder.reads_of(BIG_A) > 0
    referrers = manifest(registry.client(), "pipeline/v1-spans", pushed.digest.replace(":", "-"))
    listed = {d["digest"] for d in referrers["manifests"]}  # type: ignore[attr-defined]
    assert listed == {*first.soci_indexes, *other.soci_indexes}


def test_v1_a_deleted_soci_index_still_listed_by_the_fallback_tag_is_built_again(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "pipeline/v1-stale", amd64(BIG_B))
    first = index_image(registry.client(), "pipeline/v1-stale", "v1", V1)
    (deleted,) = first.soci_indexes
    registry.delete_manifest("pipeline/v1-stale", deleted)

    recorder = Recorder()
    result = index_image(registry.client(observer=recorder), "pipeline/v1-stale", "v1", V1)
    assert result.status is ImageStatus.INDEXED
    assert result.soci_indexes == first.soci_indexes
    assert recorder.reads_of(BIG_B) > 0
    assert registry.client().head_manifest("pipeline/v1-stale", deleted) == deleted
    fallback = manifest(registry.client(), "pipeline/v1-stale", pushed.digest.replace(":", "-"))
    assert [d["digest"] for d in fallback["manifests"]] == [deleted]  # type: ignore[attr-defined]


def test_v1_an_index_listed_by_the_referrers_api_counts_as_indexed(
    registry: LocalRegistry,
) -> None:
    """docker-registry has no referrers API; a proxy answers it the way registries that
    have it do, from what the first run pushed."""
    pushed = push(registry, "pipeline/v1-api", amd64(BIG_A))
    first = index_image(registry.client(), "pipeline/v1-api", "v1", V1)
    fallback = registry.client().get_manifest("pipeline/v1-api", pushed.digest.replace(":", "-"))
    answers = {"listed": fallback.data, "empty": b'{"schemaVersion":2,"manifests":[]}'}
    answer = ["listed"]

    def referrers_api(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if "/referrers/" in path:
            return Answer(200, {"Content-Type": OCI_INDEX}, answers[answer[0]])
        if path.endswith("/manifests/" + pushed.digest.replace(":", "-")):
            return Answer(404)  # a registry with the API has no need of the fallback tag
        return None

    with proxy(registry.host, referrers_api) as front:
        recorder = Recorder()
        again = index_image(
            registry.client(via=front.host, observer=recorder), "pipeline/v1-api", "v1", V1
        )
        assert again.status is ImageStatus.ALREADY_INDEXED
        assert again.soci_indexes == first.soci_indexes
        assert recorder.reads_of(BIG_A) == 0

        answer[0] = "empty"
        recorder = Recorder()
        rebuilt = index_image(
            registry.client(via=front.host, observer=recorder), "pipeline/v1-api", "v1", V1
        )
        assert rebuilt.status is ImageStatus.INDEXED
        assert rebuilt.soci_indexes == first.soci_indexes
        assert recorder.reads_of(BIG_A) > 0


# ---- progress -------------------------------------------------------------------------------


def test_progress_reports_bytes_of_each_layer_up_to_its_size(registry: LocalRegistry) -> None:
    push(registry, "pipeline/progress", amd64(BIG_A))
    seen: list[tuple[str, int, int]] = []
    report: Callable[[str, int, int], None] = lambda *args: seen.append(args)  # noqa: E731
    index_image(registry.client(), "pipeline/progress", "v1", OPTIONS, progress=report)
    assert seen[-1] == (BIG_A.digest, BIG_A.size, BIG_A.size)
    assert all(done <= total for _, done, total in seen)


def test_layers_are_big_enough_for_the_lowered_minimum() -> None:
    """Guards the module's premise: BIG_* layers qualify, SMALL does not."""
    assert min(BIG_A.size, BIG_B.size, BIG_TAR.size) >= OPTIONS.min_layer_size > SMALL.size
    assert BIG_A.size > MIB


def test_an_artifact_listed_beside_the_images_is_kept_and_not_indexed(
    registry: LocalRegistry,
) -> None:
    client = registry.client()
    pushed = push(registry, "pipeline/with-artifact", amd64(BIG_A), arm64(BIG_B))
    artifact, artifact_digest = push_artifact(
        client, "pipeline/with-artifact", None, "application/vnd.example.sbom+json"
    )
    index = json.loads(client.get_manifest("pipeline/with-artifact", "v1").data)
    index["manifests"].append(
        {"mediaType": OCI_MANIFEST, "digest": artifact_digest, "size": len(artifact)}
    )
    client.put_manifest("pipeline/with-artifact", "v1", json.dumps(index).encode(), OCI_INDEX)

    result = index_image(client, "pipeline/with-artifact", "v1", OPTIONS)
    output = manifest(client, "pipeline/with-artifact", output_tag(result))
    assert result.status is ImageStatus.INDEXED
    assert len(soci_entries(output)) == len(pushed.manifests) == 2
    assert artifact_digest in [e["digest"] for e in image_entries(output)]
