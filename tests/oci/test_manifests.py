"""Manifests in and out: parsing, the SOCI index and the v2 conversion, byte for byte."""

from __future__ import annotations

import hashlib
import json

import pytest
from soci_indexer import settings
from soci_indexer.errors import ManifestError
from soci_indexer.oci import manifests
from soci_indexer.oci.manifests import Descriptor, ImageIndex, ImageManifest, Platform

A, B, C, D, E = ("sha256:" + ch * 64 for ch in "abcde")
GZIP_DOCKER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_IMAGE = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1469,
            "digest": A,
        },
        "layers": [{"mediaType": GZIP_DOCKER, "size": 31000000, "digest": B}],
    },
    indent=3,
).encode()


def parsed_image(data: bytes = DOCKER_IMAGE) -> ImageManifest:
    manifest = manifests.parse_manifest(data, settings.DOCKER_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    return manifest


def test_a_docker_manifest_becomes_an_annotated_oci_manifest() -> None:
    enabled = manifests.soci_enabled_manifest(parsed_image(), C)
    assert (
        enabled.serialize()
        == (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{A}",'
            '"size":1469},'
            f'"layers":[{{"mediaType":"{GZIP_DOCKER}","digest":"{B}","size":31000000}}],'
            f'"annotations":{{"com.amazon.soci.index-digest":"{C}"}}}}'
        ).encode()
    )


def test_unknown_fields_drop_out_and_annotations_come_out_sorted() -> None:
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": settings.OCI_MANIFEST,
            "config": {"mediaType": settings.OCI_CONFIG, "digest": A, "size": 2, "extra": 1},
            "layers": [],
            "annotations": {"z": "1", "a": "<2>"},
            "somethingElse": True,
        }
    ).encode()
    assert (
        parsed_image(data).serialize()
        == (
            f'{{"schemaVersion":2,"mediaType":"{settings.OCI_MANIFEST}",'
            f'"config":{{"mediaType":"{settings.OCI_CONFIG}","digest":"{A}","size":2}},'
            '"layers":[],"annotations":{"a":"\\u003c2\\u003e","z":"1"}}'
        ).encode()
    )


def test_the_soci_index_lists_ztocs_with_their_layer_annotations() -> None:
    layer = parsed_image().layers[0]
    ztoc = manifests.ztoc_descriptor(C, 4096, layer, 4194304)
    index = manifests.soci_index([ztoc], build_tool="soci-fargate v0.1.0")
    data = index.serialize()
    assert (
        data
        == (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            '"config":{"mediaType":"application/vnd.amazon.soci.index.v2+json",'
            '"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",'
            '"size":2},'
            f'"layers":[{{"mediaType":"application/octet-stream","digest":"{C}","size":4096,'
            f'"annotations":{{"com.amazon.soci.image-layer-digest":"{B}",'
            f'"com.amazon.soci.image-layer-mediaType":"{GZIP_DOCKER}",'
            '"com.amazon.soci.span-size":"4194304"}}],'
            '"annotations":{"com.amazon.soci.build-tool-identifier":"soci-fargate v0.1.0"}}'
        ).encode()
    )


def test_the_empty_config_digest_is_the_sha256_of_two_braces() -> None:
    assert "sha256:" + hashlib.sha256(b"{}").hexdigest() == manifests.EMPTY_CONFIG_DIGEST


def test_a_v1_soci_index_carries_its_subject_before_annotations() -> None:
    subject = Descriptor(settings.OCI_MANIFEST, D, 700)
    index = manifests.soci_index([], build_tool="t", version="v1", subject=subject)
    assert (
        index.serialize()
        == (
            f'{{"schemaVersion":2,"mediaType":"{settings.OCI_MANIFEST}",'
            '"config":{"mediaType":"application/vnd.amazon.soci.index.v1+json",'
            f'"digest":"{manifests.EMPTY_CONFIG_DIGEST}","size":2}},"layers":[],'
            f'"subject":{{"mediaType":"{settings.OCI_MANIFEST}","digest":"{D}","size":700}},'
            '"annotations":{"com.amazon.soci.build-tool-identifier":"t"}}'
        ).encode()
    )


def test_the_soci_enabled_index_replaces_indexed_manifests_and_appends_soci_indexes() -> None:
    amd64 = Platform("amd64", "linux")
    original = [
        Descriptor(settings.DOCKER_MANIFEST, A, 500, platform=amd64),
        Descriptor(
            settings.DOCKER_MANIFEST, B, 501, platform=Platform("arm64", "linux", variant="v8")
        ),
    ]
    new_manifest = Descriptor(
        settings.OCI_MANIFEST,
        C,
        600,
        annotations={manifests.ANNOTATION_INDEX_DIGEST: D},
        platform=amd64,
    )
    indexed = manifests.IndexedPlatform(A, new_manifest, Descriptor(settings.OCI_MANIFEST, D, 900))
    result = manifests.soci_enabled_index(original, [indexed])
    assert (
        result.serialize()
        == (
            f'{{"schemaVersion":2,"mediaType":"{settings.OCI_INDEX}","manifests":['
            f'{{"mediaType":"{settings.OCI_MANIFEST}","digest":"{C}","size":600,'
            f'"annotations":{{"com.amazon.soci.index-digest":"{D}"}},'
            '"platform":{"architecture":"amd64","os":"linux"}},'
            f'{{"mediaType":"{settings.DOCKER_MANIFEST}","digest":"{B}","size":501,'
            '"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},'
            f'{{"mediaType":"{settings.OCI_MANIFEST}","digest":"{D}","size":900,'
            f'"annotations":{{"com.amazon.soci.image-manifest-digest":"{C}"}},'
            '"platform":{"architecture":"amd64","os":"linux"},'
            '"artifactType":"application/vnd.amazon.soci.index.v2+json"}]}'
        ).encode()
    )


def test_a_docker_manifest_list_parses_as_an_index_with_platforms() -> None:
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": settings.DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": settings.DOCKER_MANIFEST,
                    "size": 7,
                    "digest": A,
                    "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
                }
            ],
        }
    ).encode()
    index = manifests.parse_manifest(data)
    assert isinstance(index, ImageIndex)
    assert index.manifests[0].platform == Platform("arm", "linux", variant="v7")


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [("linux/arm64", True), ("linux/arm64/v8", True), ("linux/arm64/v7", False), ("linux", False)],
)
def test_a_platform_filter_names_os_arch_and_optionally_the_variant(
    wanted: str, matches: bool
) -> None:
    assert Platform("arm64", "linux", variant="v8").matches(wanted) is matches


def test_a_soci_index_manifest_is_recognised_as_soci_output() -> None:
    assert manifests.soci_index([], build_tool="t").is_soci_index
    assert not parsed_image().is_soci_index


def test_an_index_listing_a_soci_index_is_recognised_as_soci_output() -> None:
    soci = Descriptor(settings.OCI_MANIFEST, A, 1, artifact_type=settings.SOCI_INDEX_V2)
    assert ImageIndex(settings.OCI_INDEX, (soci,)).has_soci_indexes


def test_the_referrers_fallback_tag_replaces_the_colon() -> None:
    assert manifests.referrers_tag(A) == "sha256-" + "a" * 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"schemaVersion":1,"name":"x"}', "schemaVersion 1"),
        (b'{"schemaVersion":2,"layers":[]}', "no config"),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../etc","size":1}}',
            "not a sha256",
        ),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"'
            + A.encode()
            + b'","size":-1}}',
            "non-negative",
        ),
    ],
)
def test_malformed_manifests_are_manifest_errors(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        manifests.parse_manifest(data)


def test_an_unknown_media_type_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="neither an image manifest nor an index"):
        manifests.parse_manifest(b'{"schemaVersion":2}', "application/vnd.example+json")
