"""OCI and Docker manifests, descriptors, the SOCI index and the v2 conversion.

Pure data: nothing here does I/O. Manifests are parsed into the fields Go's
``ocispec`` structs know (unknown fields drop out, as they do when the
reference tools re-serialise), and written back with ``gojson`` in those
structs' field order, so every manifest we write is a fixed point of Go's
decode/encode and its digest is the same on every run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from soci_indexer.errors import ManifestError
from soci_indexer.oci.gojson import GoValue, Struct, dumps
from soci_indexer.settings import (
    DIGEST,
    IMAGE_CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    SOCI_INDEX_TYPES,
    SOCI_INDEX_V1,
    SOCI_INDEX_V2,
)

ZTOC_MEDIA_TYPE = "application/octet-stream"

ANNOTATION_INDEX_DIGEST = "com.amazon.soci.index-digest"
ANNOTATION_IMAGE_MANIFEST_DIGEST = "com.amazon.soci.image-manifest-digest"
ANNOTATION_LAYER_DIGEST = "com.amazon.soci.image-layer-digest"
ANNOTATION_LAYER_MEDIA_TYPE = "com.amazon.soci.image-layer-mediaType"
ANNOTATION_SPAN_SIZE = "com.amazon.soci.span-size"
ANNOTATION_BUILD_TOOL = "com.amazon.soci.build-tool-identifier"
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"  # buildx attestation manifests

EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

IndexVersion = Literal["v2", "v1"]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    return DIGEST.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Platform:
    architecture: str
    os: str
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def matches(self, wanted: str) -> bool:
        """True when ``wanted`` ("os/arch" or "os/arch/variant") names this platform."""
        parts = wanted.strip().lower().split("/")
        if len(parts) not in (2, 3) or parts[:2] != [self.os.lower(), self.architecture.lower()]:
            return False
        return len(parts) == 2 or parts[2] == self.variant.lower()

    def to_go(self) -> Struct:
        fields: list[tuple[str, GoValue]] = [("architecture", self.architecture), ("os", self.os)]
        if self.os_version:
            fields.append(("os.version", self.os_version))
        if self.os_features:
            fields.append(("os.features", list(self.os_features)))
        if self.variant:
            fields.append(("variant", self.variant))
        return Struct(tuple(fields))

    @classmethod
    def from_json(cls, obj: object, what: str) -> Platform:
        fields = _object(obj, what)
        return cls(
            architecture=_string(fields, "architecture", what),
            os=_string(fields, "os", what),
            os_version=_string(fields, "os.version", what),
            os_features=tuple(_strings(fields, "os.features", what)),
            variant=_string(fields, "variant", what),
        )


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    data: bytes | None = None
    platform: Platform | None = None
    artifact_type: str = ""

    def to_go(self) -> Struct:
        fields: list[tuple[str, GoValue]] = [
            ("mediaType", self.media_type),
            ("digest", self.digest),
            ("size", self.size),
        ]
        if self.urls:
            fields.append(("urls", list(self.urls)))
        if self.annotations:
            fields.append(("annotations", dict(self.annotations)))
        if self.data:
            fields.append(("data", base64.b64encode(self.data).decode("ascii")))
        if self.platform is not None:
            fields.append(("platform", self.platform.to_go()))
        if self.artifact_type:
            fields.append(("artifactType", self.artifact_type))
        return Struct(tuple(fields))

    @classmethod
    def from_json(cls, obj: object, what: str) -> Descriptor:
        fields = _object(obj, what)
        digest = _string(fields, "digest", what)
        if not is_digest(digest):
            raise ManifestError(f"{what}: {digest!r} is not a sha256/sha512 digest")
        size = fields.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{what}: size must be a non-negative integer, got {size!r}")
        platform = fields.get("platform")
        return cls(
            media_type=_string(fields, "mediaType", what),
            digest=digest,
            size=size,
            urls=tuple(_strings(fields, "urls", what)),
            annotations=_annotations(fields, what),
            data=_data(fields, what),
            platform=None if platform is None else Platform.from_json(platform, f"{what} platform"),
            artifact_type=_string(fields, "artifactType", what),
        )


def _document(doc: ImageManifest | ImageIndex, body: list[tuple[str, GoValue]]) -> Struct:
    """A manifest's or index's fields in Go's struct order, omitting what Go omits when empty:
    schemaVersion, mediaType, artifactType, <body>, subject, annotations."""
    fields: list[tuple[str, GoValue]] = [("schemaVersion", doc.schema_version)]
    if doc.media_type:
        fields.append(("mediaType", doc.media_type))
    if doc.artifact_type:
        fields.append(("artifactType", doc.artifact_type))
    fields.extend(body)
    if doc.subject is not None:
        fields.append(("subject", doc.subject.to_go()))
    if doc.annotations:
        fields.append(("annotations", dict(doc.annotations)))
    return Struct(tuple(fields))


@dataclass(frozen=True, slots=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""
    subject: Descriptor | None = None
    schema_version: int = 2

    def to_go(self) -> Struct:
        layers: list[GoValue] = [layer.to_go() for layer in self.layers]
        return _document(self, [("config", self.config.to_go()), ("layers", layers)])

    def serialize(self) -> bytes:
        return dumps(self.to_go())

    @property
    def is_soci_index(self) -> bool:
        return self.config.media_type in SOCI_INDEX_TYPES

    @property
    def is_soci_enabled(self) -> bool:
        return ANNOTATION_INDEX_DIGEST in self.annotations

    @property
    def is_image(self) -> bool:
        return self.config.media_type in IMAGE_CONFIG_TYPES and not self.artifact_type


@dataclass(frozen=True, slots=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""
    subject: Descriptor | None = None
    schema_version: int = 2

    def to_go(self) -> Struct:
        return _document(self, [("manifests", [d.to_go() for d in self.manifests])])

    def serialize(self) -> bytes:
        return dumps(self.to_go())

    @property
    def has_soci_indexes(self) -> bool:
        return any(is_soci_index_descriptor(desc) for desc in self.manifests)


def is_soci_index_descriptor(desc: Descriptor) -> bool:
    return (
        desc.artifact_type in SOCI_INDEX_TYPES
        or ANNOTATION_IMAGE_MANIFEST_DIGEST in desc.annotations
    )


def is_attestation(desc: Descriptor) -> bool:
    """Buildx puts provenance/SBOM manifests in the index as platform unknown/unknown."""
    unknown = desc.platform is not None and desc.platform.os == "unknown"
    return unknown or ANNOTATION_REFERENCE_TYPE in desc.annotations


def parse_manifest(data: bytes, media_type: str = "") -> ImageManifest | ImageIndex:
    """Decode a manifest or index; ``media_type`` is the registry's Content-Type."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    fields = _object(obj, "manifest")
    declared = _string(fields, "mediaType", "manifest")
    kind = _manifest_kind(declared or media_type.split(";")[0].strip(), fields)
    schema = fields.get("schemaVersion")
    if schema != 2:
        raise ManifestError(f"manifest schemaVersion {schema!r} is not supported (only 2)")
    media = declared
    annotations = _annotations(fields, "manifest")
    artifact_type = _string(fields, "artifactType", "manifest")
    subject = _optional_descriptor(fields, "subject")
    if kind == "index":
        return ImageIndex(
            media, _descriptors(fields, "manifests"), annotations, artifact_type, subject
        )
    if "config" not in fields:
        raise ManifestError("image manifest has no config")
    config = Descriptor.from_json(fields["config"], "manifest config")
    layers = _descriptors(fields, "layers")
    return ImageManifest(media, config, layers, annotations, artifact_type, subject)


def parse_platform_from_config(data: bytes) -> Platform:
    """The platform an image config declares (how a lone manifest gets one in an index)."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"image config is not JSON: {exc}") from None
    return Platform.from_json(obj, "image config")


# ---- SOCI index and the v2 conversion -------------------------------------------------------


def ztoc_descriptor(
    ztoc_digest: str, ztoc_size: int, layer: Descriptor, span_size: int
) -> Descriptor:
    """The zTOC's entry in a SOCI index: found by the layer digest it annotates."""
    annotations = {
        ANNOTATION_LAYER_DIGEST: layer.digest,
        ANNOTATION_LAYER_MEDIA_TYPE: layer.media_type,
        ANNOTATION_SPAN_SIZE: str(span_size),
    }
    return Descriptor(ZTOC_MEDIA_TYPE, ztoc_digest, ztoc_size, annotations=annotations)


def soci_index(
    ztocs: Sequence[Descriptor],
    *,
    build_tool: str,
    version: IndexVersion = "v2",
    subject: Descriptor | None = None,
) -> ImageManifest:
    """The SOCI index manifest: config ``{}`` typed by version, layers = the zTOCs."""
    config_type = SOCI_INDEX_V2 if version == "v2" else SOCI_INDEX_V1
    return ImageManifest(
        media_type=OCI_MANIFEST,
        config=Descriptor(config_type, EMPTY_CONFIG_DIGEST, len(EMPTY_CONFIG)),
        layers=tuple(ztocs),
        annotations={ANNOTATION_BUILD_TOOL: build_tool},
        subject=subject,
    )


def soci_enabled_manifest(image: ImageManifest, soci_index_digest: str) -> ImageManifest:
    """The image manifest re-typed as OCI and pointing at its SOCI index (3.1 step 1)."""
    return replace(
        image,
        media_type=OCI_MANIFEST,
        config=replace(image.config, media_type=OCI_CONFIG),
        annotations={**image.annotations, ANNOTATION_INDEX_DIGEST: soci_index_digest},
    )


@dataclass(frozen=True, slots=True)
class IndexedPlatform:
    """One platform manifest that got a SOCI index, as the output index lists it."""

    original_digest: str
    manifest: Descriptor  # the SOCI-enabled image manifest
    soci_index: Descriptor  # the SOCI index manifest


def soci_index_entry(indexed: IndexedPlatform) -> Descriptor:
    return replace(
        indexed.soci_index,
        annotations={ANNOTATION_IMAGE_MANIFEST_DIGEST: indexed.manifest.digest},
        platform=indexed.manifest.platform,
        artifact_type=SOCI_INDEX_V2,
    )


def soci_enabled_index(
    original: Iterable[Descriptor],
    indexed: Sequence[IndexedPlatform],
    annotations: Mapping[str, str] | None = None,
) -> ImageIndex:
    """The OCI index of the SOCI-enabled image (3.1 step 2).

    The original manifests keep their order, indexed ones replaced by their
    SOCI-enabled manifests; one SOCI index descriptor per indexed platform
    follows, in the same order.
    """
    by_original = {item.original_digest: item.manifest for item in indexed}
    manifests = [by_original.get(desc.digest, desc) for desc in original]
    manifests.extend(soci_index_entry(item) for item in indexed)
    return ImageIndex(
        media_type=OCI_INDEX, manifests=tuple(manifests), annotations=dict(annotations or {})
    )


def referrer_descriptor(manifest: ImageManifest, digest: str, size: int) -> Descriptor:
    """How a manifest with a subject is listed by the referrers API (and its tag fallback)."""
    return Descriptor(
        manifest.media_type or OCI_MANIFEST,
        digest,
        size,
        annotations=dict(manifest.annotations),
        artifact_type=manifest.artifact_type or manifest.config.media_type,
    )


def referrers_tag(digest: str) -> str:
    """The referrers tag schema: ``sha256:abc`` is listed under the tag ``sha256-abc``."""
    return digest.replace(":", "-", 1)[:128]


# ---- decoding helpers ------------------------------------------------------------------------


def _manifest_kind(media_type: str, fields: Mapping[str, Any]) -> Literal["index", "manifest"]:
    if media_type in INDEX_TYPES:
        return "index"
    if media_type in MANIFEST_TYPES:
        return "manifest"
    if media_type:
        raise ManifestError(f"media type {media_type!r} is neither an image manifest nor an index")
    return "index" if "manifests" in fields else "manifest"


def _object(obj: object, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestError(f"{what} must be a JSON object")
    return obj


def _string(fields: Mapping[str, Any], key: str, what: str) -> str:
    value = fields.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"{what}: {key} must be a string")
    return value


def _strings(fields: Mapping[str, Any], key: str, what: str) -> list[str]:
    value = fields.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ManifestError(f"{what}: {key} must be a list of strings")
    return value


def _annotations(fields: Mapping[str, Any], what: str) -> dict[str, str]:
    value = fields.get("annotations") or {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ManifestError(f"{what}: annotations must map strings to strings")
    return dict(value)


def _data(fields: Mapping[str, Any], what: str) -> bytes | None:
    value = fields.get("data")
    if value is None:
        return None
    try:
        return base64.b64decode(_string(fields, "data", what), validate=True)
    except binascii.Error:
        raise ManifestError(f"{what}: data is not base64") from None


def _descriptors(fields: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    value = fields.get(key) or []
    if not isinstance(value, list):
        raise ManifestError(f"manifest {key} must be a list")
    return tuple(Descriptor.from_json(item, f"{key}[{i}]") for i, item in enumerate(value))


def _optional_descriptor(fields: Mapping[str, Any], key: str) -> Descriptor | None:
    value = fields.get(key)
    return None if value is None else Descriptor.from_json(value, key)
