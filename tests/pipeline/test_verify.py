"""``verify`` against indexes the pipeline pushed to a real registry, good and tampered."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from soci_indexer import settings
from soci_indexer.engine import ztoc
from soci_indexer.engine.ztoc import Ztoc
from soci_indexer.oci import manifests
from soci_indexer.oci.client import RegistryClient
from soci_indexer.oci.manifests import Descriptor, ImageIndex, ImageManifest
from soci_indexer.pipeline import ImageResult, IndexOptions, index_image
from soci_indexer.verify import VerifyReport, verify_image
from support.images import (
    MIB,
    PlatformImage,
    gzip_tar_layer,
    push_image,
    tar_layer,
    zeros_file_layer,
)
from support.registry import LocalRegistry

OPTIONS = IndexOptions(min_layer_size=256 * 1024, span_size=256 * 1024)
GZIP = gzip_tar_layer(1.5, seed=21, random_share=0.3)
TAR = tar_layer(1.0, seed=22)
REPO = "verify/image"


@pytest.fixture(scope="module")
def indexed(registry: LocalRegistry) -> ImageResult:
    image = PlatformImage("linux", "amd64", (GZIP, TAR))
    push_image(registry.client(), REPO, "v1", [image])
    return index_image(registry.client(), REPO, "v1", OPTIONS)


@pytest.fixture(scope="module")
def good_report(registry: LocalRegistry, indexed: ImageResult) -> VerifyReport:
    return verify_image(registry.client(), REPO, "v1-soci")


def test_a_freshly_indexed_image_verifies(good_report: VerifyReport) -> None:
    assert good_report.problems == []
    assert [check.problems for check in good_report.layers] == [[], []]
    assert good_report.ok


def test_verify_checks_every_span_of_every_layer(good_report: VerifyReport) -> None:
    spans = [check.spans for check in good_report.layers]
    assert spans[0] > 1
    assert spans[1] == -(-TAR.size // (256 * 1024))  # uncompressed: one span per span_size


def test_verify_reads_sample_files_lazily(good_report: VerifyReport) -> None:
    assert [check.files_read for check in good_report.layers] == [3, 3]


def test_a_lazy_start_reading_one_file_fetches_less_than_the_image(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    report = verify_image(registry.client(), REPO, "v1-soci", samples=1)
    assert report.image_bytes > GZIP.size + TAR.size
    assert 0 < report.lazy_bytes < report.image_bytes


def test_an_image_that_was_never_indexed_fails_verification(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    report = verify_image(registry.client(), REPO, "v1")
    assert not report.ok
    assert report.problems == [
        "the manifest is not SOCI-enabled: no com.amazon.soci.index-digest annotation (v2)"
        " and no SOCI index among its referrers (v1)"
    ]


@pytest.mark.parametrize("as_index", [False, True], ids=["manifest", "index"])
def test_an_image_indexed_with_index_version_v1_verifies_through_its_referrers(
    registry: LocalRegistry, as_index: bool
) -> None:
    client = registry.client()
    repository = f"verify/legacy-{'index' if as_index else 'manifest'}"
    image = PlatformImage("linux", "amd64", (GZIP, TAR))
    push_image(client, repository, "v1", [image], as_index=as_index)
    v1 = dataclasses.replace(OPTIONS, index_version="v1")
    assert len(index_image(client, repository, "v1", v1).soci_indexes) == 1
    report = verify_image(client, repository, "v1")
    assert report.problems == []
    assert [check.layer.digest for check in report.layers] == [GZIP.digest, TAR.digest]
    assert report.ok


def republish(
    client: RegistryClient,
    tag: str,
    change_ztoc: Callable[[Ztoc], Ztoc] | None = None,
    change_layers: Callable[[list[Descriptor]], list[Descriptor]] | None = None,
) -> None:
    """Push a copy of ``v1-soci`` under ``tag`` with its first zTOC or its zTOC list changed."""
    index = manifests.parse_manifest(client.get_manifest(REPO, "v1-soci").data)
    assert isinstance(index, ImageIndex)
    image_desc = index.manifests[0]
    image = manifests.parse_manifest(client.get_manifest(REPO, image_desc.digest).data)
    assert isinstance(image, ImageManifest)
    soci = manifests.parse_manifest(
        client.get_manifest(REPO, image.annotations[manifests.ANNOTATION_INDEX_DIGEST]).data
    )
    assert isinstance(soci, ImageManifest)
    layers = list(soci.layers)
    if change_ztoc is not None:
        changed = ztoc.serialize(change_ztoc(ztoc.parse(client.get_blob(REPO, layers[0].digest))))
        digest = client.push_blob(REPO, changed)
        layers[0] = dataclasses.replace(layers[0], digest=digest, size=len(changed))
    if change_layers is not None:
        layers = change_layers(layers)
    soci_bytes = dataclasses.replace(soci, layers=tuple(layers)).serialize()
    soci_digest = manifests.sha256_digest(soci_bytes)
    client.put_manifest(REPO, soci_digest, soci_bytes, settings.OCI_MANIFEST)
    original = dataclasses.replace(image, annotations={}, media_type=settings.OCI_MANIFEST)
    enabled = manifests.soci_enabled_manifest(original, soci_digest).serialize()
    client.put_manifest(REPO, manifests.sha256_digest(enabled), enabled, settings.OCI_MANIFEST)
    entry = manifests.IndexedPlatform(
        "",
        dataclasses.replace(
            image_desc,
            digest=manifests.sha256_digest(enabled),
            size=len(enabled),
            annotations={manifests.ANNOTATION_INDEX_DIGEST: soci_digest},
        ),
        Descriptor(settings.OCI_MANIFEST, soci_digest, len(soci_bytes)),
    )
    output = manifests.soci_enabled_index([entry.manifest], [entry]).serialize()
    client.put_manifest(REPO, tag, output, settings.OCI_INDEX)


def test_a_zTOC_with_a_wrong_span_digest_fails_verification(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    def break_span_digest(parsed: Ztoc) -> Ztoc:
        digests = list(parsed.compression.span_digests)
        digests[1] = "sha256:" + "0" * 64
        info = dataclasses.replace(parsed.compression, span_digests=tuple(digests))
        return dataclasses.replace(parsed, compression=info)

    client = registry.client()
    republish(client, "bad-span", change_ztoc=break_span_digest)
    report = verify_image(client, REPO, "bad-span")
    assert not report.ok
    assert report.layers[0].problems == ["span 1 does not match its digest"]


def test_a_zTOC_missing_a_tar_entry_fails_verification(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    def drop_an_entry(parsed: Ztoc) -> Ztoc:
        entries = list(parsed.metadata)
        del entries[len(entries) // 2]
        return dataclasses.replace(parsed, metadata=tuple(entries))

    client = registry.client()
    republish(client, "missing-entry", change_ztoc=drop_an_entry)
    problems = verify_image(client, REPO, "missing-entry").layers[0].problems
    assert len(problems) == 1
    assert "are not one chain of tar headers" in problems[0]


def test_a_zTOC_attached_to_the_wrong_layer_fails_verification(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    def swap_layers(layers: list[Descriptor]) -> list[Descriptor]:
        first, second = layers
        key = manifests.ANNOTATION_LAYER_DIGEST
        return [
            dataclasses.replace(
                first, annotations={**first.annotations, key: second.annotations[key]}
            ),
            dataclasses.replace(
                second, annotations={**second.annotations, key: first.annotations[key]}
            ),
        ]

    client = registry.client()
    republish(client, "swapped", change_layers=swap_layers)
    report = verify_image(client, REPO, "swapped")
    assert not report.ok
    assert all("the manifest says" in check.problems[0] for check in report.layers)


def test_the_output_index_lists_what_verify_reads(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    """The index verify starts from is plain JSON any client can read."""
    index = json.loads(registry.client().get_manifest(REPO, "v1-soci").data)
    assert index["mediaType"] == settings.OCI_INDEX


def rebind(client: RegistryClient, tag: str, image_manifest_digest: str) -> str:
    """Push a copy of the ``v1-soci`` index under ``tag`` whose SOCI index entry names
    ``image_manifest_digest``; return the SOCI index digest."""
    index = manifests.parse_manifest(client.get_manifest(REPO, "v1-soci").data)
    assert isinstance(index, ImageIndex)
    key = manifests.ANNOTATION_IMAGE_MANIFEST_DIGEST
    (soci,) = (desc for desc in index.manifests if key in desc.annotations)
    entries = tuple(
        dataclasses.replace(desc, annotations={key: image_manifest_digest})
        if desc is soci
        else desc
        for desc in index.manifests
    )
    changed = dataclasses.replace(index, manifests=entries).serialize()
    client.put_manifest(REPO, tag, changed, settings.OCI_INDEX)
    return soci.digest


def test_a_SOCI_index_bound_to_a_manifest_the_repository_lacks_fails_verification(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    client = registry.client()
    absent = "sha256:" + "1" * 64
    soci_digest = rebind(client, "bound-to-nothing", absent)
    report = verify_image(client, REPO, "bound-to-nothing")
    assert not report.ok
    assert report.problems == [
        f"SOCI index {soci_digest} names image manifest {absent}"
        f" ({manifests.ANNOTATION_IMAGE_MANIFEST_DIGEST}), which the repository does not have"
    ]


def test_a_SOCI_index_bound_to_a_manifest_that_does_not_point_back_fails_verification(
    registry: LocalRegistry, indexed: ImageResult
) -> None:
    client = registry.client()
    unindexed = client.get_manifest(REPO, "v1").digest  # exists, names no SOCI index
    soci_digest = rebind(client, "bound-to-the-source", unindexed)
    report = verify_image(client, REPO, "bound-to-the-source")
    assert not report.ok
    assert report.problems == [
        f"SOCI index {soci_digest} names image manifest {unindexed}"
        f" ({manifests.ANNOTATION_IMAGE_MANIFEST_DIGEST}), whose"
        f" {manifests.ANNOTATION_INDEX_DIGEST} is not this SOCI index"
    ]


ZEROS_MIB = 256
PEAK_OF_VERIFY = """
import re, sys
from soci_indexer.cli.main import main
status = main(sys.argv[1:])
status_text = open("/proc/self/status").read()
print("peak", re.search(r"^VmHWM:\\s+(\\d+) kB", status_text, re.M).group(1), file=sys.stderr)
sys.exit(status)
"""


def test_verify_reads_a_big_file_back_in_memory_well_below_its_size(
    registry: LocalRegistry,
) -> None:
    """``verify`` compares the sampled files by streamed digests, not by holding them: its
    peak resident memory (VmHWM, in a process of its own) stays far below the file's size."""
    client = registry.client()
    push_image(
        client,
        "verify/zeros",
        "v1",
        [PlatformImage("linux", "amd64", (zeros_file_layer(ZEROS_MIB),))],
    )
    index_image(client, "verify/zeros", "v1", IndexOptions(min_layer_size=0))
    image = f"{registry.host}/verify/zeros:v1-soci"
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_VERIFY, "verify", image, "--plain-http"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 files read lazily: ok" in done.stdout
    peak = re.fullmatch(r"peak (\d+)\n", done.stderr)
    assert peak is not None, done.stderr
    peak_kib = int(peak[1])
    assert peak_kib * 1024 < ZEROS_MIB * MIB // 2


def test_an_image_with_two_v1_indexes_is_checked_through_both_and_counted_once(
    registry: LocalRegistry,
) -> None:
    client = registry.client()
    repository = "verify/legacy-twice"
    push_image(client, repository, "v1", [PlatformImage("linux", "amd64", (GZIP, TAR))])
    for span_size in (256 * 1024, 512 * 1024):
        options = dataclasses.replace(OPTIONS, index_version="v1", span_size=span_size)
        index_image(client, repository, "v1", options)
    image = manifests.parse_manifest(client.get_manifest(repository, "v1").data)
    assert isinstance(image, ImageManifest)
    report = verify_image(client, repository, "v1")
    assert report.ok
    assert len(report.layers) == 4
    assert report.image_bytes == image.config.size + GZIP.size + TAR.size
