"""Image reference -> SOCI-enabled image: per platform, per layer, through the engine.

Knows the registry only through ``registry.RegistryClient``; knows nothing of AWS.

The order of work is what makes a run safe to repeat and to interrupt:
resolve and classify the push (SOCI output and non-images are skipped before
any byte is read), return early when ``<tag><suffix>`` (v1: the image's
referrers) already holds exactly what this run would write, stream every
qualifying layer through the engine (a bounded pool, nothing on disk), then
push zTOCs, SOCI indexes, SOCI-enabled manifests and, last of all, the output
tag, so it never names a partial result. Just before that write the source tag
is resolved again: if another push moved it meanwhile, the run stops
(``tag-moved``) rather than point ``<tag><suffix>`` back at the older image.
All JSON is Go-canonical and deterministic, so a repeat run computes the same
digests and every object it would push is already there.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from soci_indexer import settings
from soci_indexer.engine.build import CompressionChoice, build_ztoc
from soci_indexer.errors import (
    Cancelled,
    CorruptLayer,
    DeadlineExceeded,
    ImageNotFound,
    InvalidReference,
    LayerError,
    ManifestError,
    NothingToIndex,
    RegistryError,
    SociError,
    TagMoved,
    TagSelectionError,
)
from soci_indexer.oci import manifests, referrers
from soci_indexer.oci.manifests import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    IndexedPlatform,
    IndexVersion,
    Platform,
)
from soci_indexer.oci.ranged import stream_blob_ranged
from soci_indexer.oci.reference import is_valid_tag

if TYPE_CHECKING:
    from soci_indexer.oci.client import RegistryClient

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
BackfillCallback = Callable[["BackfillResult"], None]

# Why a backfill leaves the builder's own output alone; the handler's reason for the same event.
SOCI_OUTPUT_TAG = "soci-output-tag"


@dataclass(frozen=True, slots=True)
class IndexOptions:
    index_version: IndexVersion = "v2"
    tag_suffix: str = settings.DEFAULT_TAG_SUFFIX
    platforms: tuple[str, ...] = ()  # "os/arch[/variant]"; empty: every platform
    min_layer_size: int = settings.DEFAULT_MIN_LAYER_SIZE
    span_size: int = settings.DEFAULT_SPAN_SIZE
    build_tool: str = settings.DEFAULT_BUILD_TOOL
    max_workers: int = settings.DEFAULT_MAX_LAYER_WORKERS  # layers indexed at once
    # connections fetching one layer in ranges of range_size bytes (1: one plain stream)
    blob_connections: int = settings.DEFAULT_BLOB_CONNECTIONS
    range_size: int = settings.DEFAULT_RANGE_SIZE
    # time.monotonic() after which the run stops, even mid-layer or mid-retry, and tags nothing
    deadline: float | None = None


class LayerStatus(StrEnum):
    INDEXED = "indexed"
    TOO_SMALL = "skipped-too-small"
    UNSUPPORTED = "skipped-unsupported"  # zstd, foreign media type, unsupported tar entry
    CORRUPT = "skipped-corrupt"


class ImageStatus(StrEnum):
    INDEXED = "indexed"
    ALREADY_INDEXED = "already-indexed"
    NO_QUALIFYING_LAYERS = "skipped-no-qualifying-layers"
    SOCI_ARTIFACT = "skipped-soci-artifact"  # the push is itself SOCI output
    NOT_AN_IMAGE = "skipped-not-an-image"  # attestation, signature, other artifact
    TAG_MOVED = "skipped-tag-moved"  # a newer push took the tag while this run worked


@dataclass(frozen=True, slots=True)
class LayerOutcome:
    platform: str
    digest: str
    media_type: str
    size: int
    status: LayerStatus
    reason: str = ""
    ztoc_digest: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ImageResult:
    repository: str
    reference: str  # the tag or digest asked for
    status: ImageStatus
    output_reference: str | None  # "REGISTRY/REPO:TAG-soci@sha256:..." when something was pushed
    layers: tuple[LayerOutcome, ...]
    seconds: float
    reason: str = ""
    soci_indexes: tuple[str, ...] = ()  # digests of the SOCI index manifests (new or found)
    source_digest: str = ""  # the image the run worked on; "" if it stopped before resolving


def index_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    options: IndexOptions = IndexOptions(),
    *,
    progress: ProgressCallback | None = None,
) -> ImageResult:
    """Index ``repository:reference`` and push its SOCI-enabled image.

    ``reference`` is a tag, a digest, or ``tag@digest`` (resolve by digest,
    name the output after the tag). ``progress(layer_digest, bytes_done,
    bytes_total)`` reports long layers. Registry failures raise RegistryError
    (worth a retry); layers that cannot be indexed are reported, not raised.
    ``options.deadline`` passing anywhere raises DeadlineExceeded. Either way,
    the first layer to fail stops the others at their next chunk, and the
    output tag, written last, is not written.
    """
    return _Run(client, repository, reference, options, progress).run()


@dataclass(frozen=True, slots=True)
class EnsuredImage:
    source_digest: str  # the image asked for, resolved
    soci_digest: str  # its SOCI-enabled image; for v1, the image itself (bound by referrers)
    reference: str  # "REGISTRY/REPO@<soci_digest>", what a task definition pins
    built: bool  # False when it was already there (no layer was read)


def ensure_soci_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    options: IndexOptions = IndexOptions(),
    *,
    progress: ProgressCallback | None = None,
) -> EnsuredImage:
    """The SOCI-enabled image of ``repository:reference``, built only if it is missing.

    A second call for the same image reads manifests alone, no layer. Raises
    InvalidReference for a malformed reference, ImageNotFound when the repository
    has no such tag or digest, NothingToIndex when the image has no layer SOCI can
    index (or is no image at all), TagMoved when a newer push took the tag meanwhile,
    and RegistryError (worth a retry) for registry failures.
    """
    tag, digest = _split_reference(reference)
    name = f"{client.host}/{repository}{'@' if manifests.is_digest(reference) else ':'}{reference}"
    if client.with_deadline(options.deadline).head_manifest(repository, digest or tag) is None:
        raise ImageNotFound(f"{name} not found: check the repository and the tag or digest")
    result = index_image(client, repository, reference, options, progress=progress)
    if result.status is ImageStatus.TAG_MOVED:
        raise TagMoved(f"{result.reason}; run again to index what the tag names now")
    if result.output_reference is None:
        raise NothingToIndex(
            f"{name} has nothing SOCI can index: {result.status.value}: {result.reason}"
            + _layer_problems(result.layers)
        )
    return _ensured(client.host, repository, result, options)


def find_soci_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    options: IndexOptions = IndexOptions(),
) -> EnsuredImage | None:
    """The SOCI-enabled image of ``repository:reference`` if it is already there, else None.

    Reads manifests (and SOCI indexes) only, never a layer, and writes nothing:
    None means ``ensure_soci_image`` would have to build, would find nothing to
    index, or that the repository has no such image (not yet copied there, say).
    Raises InvalidReference and RegistryError as ``index_image`` does.
    """
    tag, digest = _split_reference(reference)
    if client.head_manifest(repository, digest or tag) is None:
        return None
    result = _Run(client, repository, reference, options, None).find()
    if result is None or result.output_reference is None:
        return None
    return _ensured(client.host, repository, result, options)


def _ensured(
    host: str, repository: str, result: ImageResult, options: IndexOptions
) -> EnsuredImage:
    if options.index_version == "v1" or result.output_reference is None:
        soci_digest = result.source_digest
    else:
        soci_digest = result.output_reference.rpartition("@")[2]
    return EnsuredImage(
        source_digest=result.source_digest,
        soci_digest=soci_digest,
        reference=f"{host}/{repository}@{soci_digest}",
        built=result.status is ImageStatus.INDEXED,
    )


def _layer_problems(layers: Iterable[LayerOutcome], most: int = 3) -> str:
    """``"; layer sha256:... skipped-corrupt: why"`` for the layers that could not be read
    (corrupt or unsupported; too-small ones are counted in the reason already)."""
    bad = [
        layer for layer in layers if layer.status in (LayerStatus.CORRUPT, LayerStatus.UNSUPPORTED)
    ]
    unique = list({layer.digest: layer for layer in bad}.values())
    text = "".join(
        f"; layer {layer.digest} {layer.status.value}: {layer.reason}" for layer in unique[:most]
    )
    if len(unique) > most:
        text += f"; and {len(unique) - most} more"
    return text


# ---- copying an image into another repository ----------------------------------------------


@dataclass(frozen=True, slots=True)
class CopiedImage:
    digest: str  # the image copied: the same digest in both repositories
    mounted: int = 0  # blobs the registry linked across repositories (no byte sent)
    streamed: int = 0  # blobs read and uploaded because the registry would not mount them
    present: int = 0  # blobs (and, when the image was there already, manifests) already there


def copy_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    target_repository: str,
    *,
    deadline: float | None = None,
) -> CopiedImage:
    """Copy ``repository:reference`` into ``target_repository``, by digest, tagging nothing.

    An index is copied with every manifest it lists (each under its digest), a
    manifest with its config and layers. Blobs are mounted from ``repository``
    (the registry links them, no byte travels) or, where the registry declines,
    streamed across a part at a time. Manifests are written after what they
    name, the top one last, so the target never holds a manifest whose blobs it
    lacks; an image the target already has costs one HEAD request. Raises
    ImageNotFound when ``reference`` is not in ``repository``, ManifestError for a
    manifest that does not parse, RegistryError (worth a retry) for the rest.
    """
    tag, digest = _split_reference(reference)
    client = client.with_deadline(deadline)
    found = client.head_manifest(repository, digest or tag)
    if found is None:
        raise ImageNotFound(f"{client.host}/{repository}: no image {reference}")
    if client.head_manifest(target_repository, found) is not None:
        return CopiedImage(found, present=1)
    counts: Counter[str] = Counter()
    _copy_manifest(client, repository, found, target_repository, counts, depth=0)
    return CopiedImage(found, counts["mounted"], counts["streamed"], counts["present"])


def _copy_manifest(
    client: RegistryClient,
    repository: str,
    digest: str,
    target: str,
    counts: Counter[str],
    depth: int,
) -> None:
    fetched = client.get_manifest(repository, digest)
    parsed = manifests.parse_manifest(fetched.data, fetched.media_type)
    if isinstance(parsed, ImageIndex):
        if depth > 0:
            raise ManifestError(f"{repository}@{digest}: an index nested in an index")
        for child in parsed.manifests:
            if client.head_manifest(target, child.digest) is None:
                _copy_manifest(client, repository, child.digest, target, counts, depth + 1)
            else:
                counts["present"] += 1
    else:
        for blob in (parsed.config, *parsed.layers):
            if not blob.urls:  # a foreign layer is served from its urls, not the registry
                counts[client.copy_blob(target, blob.digest, repository)] += 1
    media_type = fetched.media_type or parsed.media_type or settings.OCI_MANIFEST
    client.put_manifest(target, digest, fetched.data, media_type)


def ensure_soci_image_in(
    client: RegistryClient,
    repository: str,
    reference: str,
    target_repository: str,
    options: IndexOptions = IndexOptions(),
    *,
    progress: ProgressCallback | None = None,
) -> EnsuredImage:
    """``ensure_soci_image`` with the SOCI-enabled image written to another repository.

    The image is copied first (``copy_image``: blobs mounted where the registry
    allows), then indexed there; the output tag is named after the source tag,
    ``<tag><suffix>`` (``sha256-<hex><suffix>`` for a digest), so a tag holds it in
    ``target_repository``. The source repository is only read.
    """
    tag, _ = _split_reference(reference)
    copied = copy_image(client, repository, reference, target_repository, deadline=options.deadline)
    log.info(
        "%s copied to %s: %d blobs mounted, %d streamed, %d already there",
        copied.digest, target_repository, copied.mounted, copied.streamed, copied.present,
    )  # fmt: skip
    pinned = f"{tag}@{copied.digest}" if tag else copied.digest
    return ensure_soci_image(client, target_repository, pinned, options, progress=progress)


# ---- what a run works on -------------------------------------------------------------------


@dataclass
class _PlatformImage:
    """One platform manifest of the pushed image and what became of its layers."""

    platform: Platform
    descriptor: Descriptor  # as the (original or synthesised) index lists it
    manifest: ImageManifest
    outcomes: dict[str, LayerOutcome] = field(default_factory=dict)  # layer digest -> outcome

    @property
    def candidates(self) -> list[Descriptor]:
        """Layers that go to the engine (decided before any byte is read)."""
        return [layer for layer in self.manifest.layers if layer.digest not in self.outcomes]


_Built = tuple[LayerStatus, str, str | None, float]  # status, reason, zTOC digest, seconds


class _Skip(Exception):
    """Internal: end the run early with this status and reason."""

    def __init__(self, status: ImageStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Run:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        reference: str,
        options: IndexOptions,
        progress: ProgressCallback | None,
    ) -> None:
        self.cancelled = threading.Event()  # set by the first layer that fails
        self.client = client.with_deadline(options.deadline, self.cancelled)
        self.repository = repository
        self.reference = reference
        self.options = options
        self.progress = progress
        self.started = time.monotonic()
        self.tag, self.digest = _split_reference(reference)
        # Asked for a tag alone, the run indexes what the tag names when it starts, and
        # must find it still there before naming the output after it. ``tag@digest``
        # pins the image: the caller chose it, whatever the tag names now.
        self.follows_tag = not self.digest
        self.output_tag = _output_tag(self.tag, self.digest, options.tag_suffix)
        self.ztoc_sizes: dict[str, int] = {}  # zTOC digest -> size, as pushed

    def run(self) -> ImageResult:
        platforms: Sequence[_PlatformImage] = ()
        try:
            index, platforms = self._start()
            return self._index(index, platforms)
        except _Skip as skip:
            log.info("image %s skipped: %s", self._image_name(), skip.reason)
            return self._result(skip.status, None, platforms, reason=skip.reason)
        except DeadlineExceeded as exc:
            raise DeadlineExceeded(
                f"{exc} after {time.monotonic() - self.started:.1f} s; "
                f"{self.output_tag} was not written"
            ) from None

    def find(self) -> ImageResult | None:
        """The already-indexed result, judged from manifests alone; None when there is
        none (a build would be needed, or the image has nothing to index)."""
        try:
            index, platforms = self._start()
            if not any(image.candidates for image in platforms):
                return None
            return self._already_indexed(index, platforms)
        except _Skip:
            return None

    # ---- resolving the push ------------------------------------------------------------------

    def _start(self) -> tuple[ImageIndex | None, list[_PlatformImage]]:
        if self.tag and self.tag.endswith(self.options.tag_suffix):
            raise _Skip(ImageStatus.SOCI_ARTIFACT, f"tag ends in {self.options.tag_suffix!r}")
        fetched = self.client.get_manifest(self.repository, self.digest or self.tag)
        self.digest = fetched.digest
        return self._resolve(fetched.data, fetched.media_type or settings.OCI_MANIFEST)

    def _resolve(
        self, data: bytes, media_type: str
    ) -> tuple[ImageIndex | None, list[_PlatformImage]]:
        top = self._parse(data, media_type)
        if isinstance(top, ImageManifest):
            self._check_image(top, "the manifest")
            platform = self._config_platform(top)
            descriptor = Descriptor(top.media_type or media_type, self.digest, len(data))
            chosen = [_PlatformImage(platform, replace(descriptor, platform=platform), top)]
            return None, self._filter(chosen)
        if top.has_soci_indexes:
            raise _Skip(ImageStatus.SOCI_ARTIFACT, "the index already lists SOCI indexes")
        images = [self._child(desc) for desc in top.manifests if self._is_image_entry(desc)]
        chosen = [image for image in images if image is not None]
        if not chosen:
            raise _Skip(ImageStatus.NOT_AN_IMAGE, "the index lists no image manifest")
        return top, self._filter(chosen)

    def _parse(self, data: bytes, media_type: str) -> ImageManifest | ImageIndex:
        try:
            return manifests.parse_manifest(data, media_type)
        except ManifestError as exc:
            raise _Skip(ImageStatus.NOT_AN_IMAGE, str(exc)) from None

    def _check_image(self, manifest: ImageManifest, what: str) -> None:
        if manifest.is_soci_index:
            raise _Skip(ImageStatus.SOCI_ARTIFACT, f"{what} is a SOCI index")
        if manifest.is_soci_enabled:
            raise _Skip(ImageStatus.SOCI_ARTIFACT, f"{what} is already SOCI-enabled")
        if not manifest.is_image:
            kind = manifest.artifact_type or manifest.config.media_type
            raise _Skip(ImageStatus.NOT_AN_IMAGE, f"{what} is a {kind!r} artifact, not an image")

    def _is_image_entry(self, desc: Descriptor) -> bool:
        return desc.media_type in settings.MANIFEST_TYPES and not manifests.is_attestation(desc)

    def _child(self, desc: Descriptor) -> _PlatformImage | None:
        """One platform of an index; None for an artifact listed beside the images (it is
        left as it is in the output index)."""
        fetched = self.client.get_manifest(self.repository, desc.digest)
        manifest = self._parse(fetched.data, fetched.media_type)
        if not isinstance(manifest, ImageManifest):
            return None
        if not (manifest.is_soci_index or manifest.is_soci_enabled or manifest.is_image):
            return None
        self._check_image(manifest, f"manifest {desc.digest}")
        platform = desc.platform or self._config_platform(manifest)
        return _PlatformImage(platform, desc, manifest)

    def _config_platform(self, manifest: ImageManifest) -> Platform:
        config = self.client.get_blob(self.repository, manifest.config.digest)
        try:
            return manifests.parse_platform_from_config(config)
        except ManifestError as exc:
            raise _Skip(ImageStatus.NOT_AN_IMAGE, str(exc)) from None

    def _filter(self, images: list[_PlatformImage]) -> list[_PlatformImage]:
        wanted = self.options.platforms
        chosen = [i for i in images if not wanted or any(i.platform.matches(w) for w in wanted)]
        if not chosen:
            found = ", ".join(str(image.platform) for image in images)
            raise _Skip(
                ImageStatus.NO_QUALIFYING_LAYERS,
                f"no platform matches {', '.join(wanted)} (the image has {found})",
            )
        for image in chosen:
            self._classify_layers(image)
        return chosen

    def _classify_layers(self, image: _PlatformImage) -> None:
        """Decide from descriptors alone which layers are skipped, and why."""
        for layer in image.manifest.layers:
            skip = _layer_skip(layer, self.options.min_layer_size)
            if skip is not None:
                status, reason = skip
                image.outcomes[layer.digest] = self._outcome(image, layer, status, reason)

    # ---- indexing ----------------------------------------------------------------------------

    def _index(self, index: ImageIndex | None, platforms: list[_PlatformImage]) -> ImageResult:
        if not any(image.candidates for image in platforms):
            raise _Skip(ImageStatus.NO_QUALIFYING_LAYERS, _no_layer_reason(platforms))
        found = self._already_indexed(index, platforms)
        if found is not None:
            return found
        self._build_ztocs(platforms)
        indexed = [image for image in platforms if self._ztocs(image)]
        if not indexed:
            raise _Skip(ImageStatus.NO_QUALIFYING_LAYERS, _no_layer_reason(platforms))
        self.client.push_blob(self.repository, manifests.EMPTY_CONFIG)
        if self.options.index_version == "v1":
            return self._push_v1(platforms, indexed)
        return self._push_v2(index, platforms, indexed)

    def _already_indexed(
        self, index: ImageIndex | None, platforms: list[_PlatformImage]
    ) -> ImageResult | None:
        if self.options.index_version == "v2":
            existing = self._existing_output(index, platforms)
        else:
            existing = self._existing_v1(platforms)
        if existing is None:
            return None
        reference, soci_indexes = existing
        log.info("image %s is already indexed as %s", self._image_name(), reference)
        return self._result(ImageStatus.ALREADY_INDEXED, reference, (), soci_indexes=soci_indexes)

    def _build_ztocs(self, platforms: Sequence[_PlatformImage]) -> None:
        """Index each distinct candidate layer once, a bounded number at a time."""
        unique = {layer.digest: layer for image in platforms for layer in image.candidates}
        workers = max(1, min(self.options.max_workers, len(unique)))
        failures: list[BaseException] = []  # in the order they happened

        def stop_the_others(done: Future[_Built]) -> None:
            error = done.exception()
            if error is not None and not isinstance(error, Cancelled):
                failures.append(error)
                self.cancelled.set()

        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="soci-layer") as pool:
                futures = {
                    digest: pool.submit(self._build_one, unique[digest]) for digest in unique
                }
                for future in futures.values():
                    future.add_done_callback(stop_the_others)
        finally:
            self.client.close_finished_threads()  # the workers' keep-alive connections
        if failures:
            raise failures[0]
        built = {digest: future.result() for digest, future in futures.items()}
        for image in platforms:
            for layer in image.candidates:
                status, reason, ztoc_digest, seconds = built[layer.digest]
                image.outcomes[layer.digest] = self._outcome(
                    image, layer, status, reason, ztoc_digest, seconds
                )

    def _build_one(self, layer: Descriptor) -> _Built:
        """Stream one layer through the engine and push its zTOC; layer problems are
        returned, registry problems raised."""
        started = time.monotonic()
        compression: CompressionChoice = (
            "gzip" if layer.media_type in settings.GZIP_LAYER_TYPES else "uncompressed"
        )
        chunks = stream_blob_ranged(
            self.client,
            self.repository,
            layer.digest,
            layer.size,
            connections=self.options.blob_connections,
            range_size=self.options.range_size,
        )
        try:
            build = build_ztoc(
                chunks,
                span_size=self.options.span_size,
                build_tool=self.options.build_tool,
                compression=compression,
                progress=self._layer_progress(layer),
            )
            if (build.layer_digest, build.layer_size) != (layer.digest, layer.size):
                raise CorruptLayer(
                    f"layer bytes hash to {build.layer_digest} ({build.layer_size} bytes), "
                    f"not to its descriptor's {layer.digest} ({layer.size} bytes)"
                )
        except LayerError as exc:
            status = (
                LayerStatus.CORRUPT if isinstance(exc, CorruptLayer) else LayerStatus.UNSUPPORTED
            )
            log.warning("layer %s not indexed (%s): %s", layer.digest, status.value, exc)
            return status, str(exc), None, time.monotonic() - started
        finally:
            chunks.close()  # an engine that stopped early leaves the download unfinished
        self.client.push_blob(self.repository, build.data)
        self.ztoc_sizes[build.digest] = len(build.data)
        return LayerStatus.INDEXED, "", build.digest, time.monotonic() - started

    def _layer_progress(self, layer: Descriptor) -> Callable[[int], None] | None:
        report = self.progress
        if report is None:
            return None
        return lambda done: report(layer.digest, done, layer.size)

    def _ztocs(self, image: _PlatformImage) -> list[Descriptor]:
        """The platform's zTOC descriptors, in the image's layer order."""
        return [
            manifests.ztoc_descriptor(
                outcome.ztoc_digest,
                self.ztoc_sizes[outcome.ztoc_digest],
                layer,
                self.options.span_size,
            )
            for layer in image.manifest.layers
            if (outcome := image.outcomes.get(layer.digest)) and outcome.ztoc_digest
        ]

    # ---- pushing -----------------------------------------------------------------------------

    def _push_v2(
        self,
        index: ImageIndex | None,
        platforms: Sequence[_PlatformImage],
        indexed: Sequence[_PlatformImage],
    ) -> ImageResult:
        entries = []
        for image in indexed:
            soci = manifests.soci_index(
                self._ztocs(image), build_tool=self.options.build_tool, version="v2"
            ).serialize()
            soci_desc = self._put_by_digest(soci)
            enabled = manifests.soci_enabled_manifest(image.manifest, soci_desc.digest)
            manifest_desc = self._put_by_digest(enabled.serialize())
            entries.append(
                IndexedPlatform(
                    image.descriptor.digest,
                    replace(
                        manifest_desc, annotations=enabled.annotations, platform=image.platform
                    ),
                    soci_desc,
                )
            )
        output = self._output_index(index, platforms, entries).serialize()
        self._check_tag_unmoved()
        digest = manifests.sha256_digest(output)
        if self.client.head_manifest(self.repository, self.output_tag) != digest:
            self.client.put_manifest(self.repository, self.output_tag, output, settings.OCI_INDEX)
        reference = f"{self.client.host}/{self.repository}:{self.output_tag}@{digest}"
        log.info("image %s indexed as %s", self._image_name(), reference)
        return self._result(
            ImageStatus.INDEXED,
            reference,
            platforms,
            soci_indexes=tuple(entry.soci_index.digest for entry in entries),
        )

    def _check_tag_unmoved(self) -> None:
        """Stop before the output tag if the source tag no longer names the indexed image.

        Two pushes of one tag can be indexed at once; the run for the older image
        must not overwrite (or precede) the newer one's output. The newer push has
        its own event, whose run writes the output tag.
        """
        if not self.follows_tag:
            return
        current = self.client.head_manifest(self.repository, self.tag)
        if current != self.digest:
            now = f"names {current}" if current else "no longer exists"
            raise _Skip(
                ImageStatus.TAG_MOVED,
                f"tag {self.tag} {now}, not the indexed {self.digest}: "
                f"{self.output_tag} was left to that image's run",
            )

    def _output_index(
        self,
        index: ImageIndex | None,
        platforms: Sequence[_PlatformImage],
        entries: Sequence[IndexedPlatform],
    ) -> ImageIndex:
        if index is None:
            return manifests.soci_enabled_index([platforms[0].descriptor], entries)
        return manifests.soci_enabled_index(index.manifests, entries, index.annotations)

    def _push_v1(
        self, platforms: Sequence[_PlatformImage], indexed: Sequence[_PlatformImage]
    ) -> ImageResult:
        """Legacy binding: SOCI indexes with a ``subject``, found through referrers."""
        soci_digests = []
        for image in indexed:
            subject = Descriptor(
                image.descriptor.media_type, image.descriptor.digest, image.descriptor.size
            )
            soci = manifests.soci_index(
                self._ztocs(image),
                build_tool=self.options.build_tool,
                version="v1",
                subject=subject,
            )
            data = soci.serialize()
            digest = manifests.sha256_digest(data)
            handled = False
            if self.client.head_manifest(self.repository, digest) is None:
                handled = self.client.put_manifest(
                    self.repository, digest, data, settings.OCI_MANIFEST
                )
            if not handled and self.client.referrers(self.repository, subject.digest) is None:
                self._add_referrer(
                    subject.digest, manifests.referrer_descriptor(soci, digest, len(data))
                )
            soci_digests.append(digest)
        return self._result(
            ImageStatus.INDEXED,
            self._source_reference(),
            platforms,
            soci_indexes=tuple(soci_digests),
        )

    def _source_reference(self) -> str:
        """v1 output is found through the image itself: ``REGISTRY/REPO[:TAG]@DIGEST``."""
        reference = f"{self.client.host}/{self.repository}"
        return reference + (f":{self.tag}@{self.digest}" if self.tag else f"@{self.digest}")

    def _add_referrer(self, subject: str, referrer: Descriptor) -> None:
        """The referrers tag schema, for registries without the referrers API (a registry
        that has it lists the SOCI index by its subject on its own)."""
        listed = self._fallback_referrers(subject)
        if any(desc.digest == referrer.digest for desc in listed):
            return
        updated = ImageIndex(settings.OCI_INDEX, (*listed, referrer))
        tag = manifests.referrers_tag(subject)
        self.client.put_manifest(self.repository, tag, updated.serialize(), settings.OCI_INDEX)

    def _fallback_referrers(self, subject: str) -> tuple[Descriptor, ...]:
        """What the ``sha256-<hex>`` referrers tag lists for ``subject`` (nothing if absent)."""
        try:
            return referrers.fallback_referrers(self.client, self.repository, subject)
        except ManifestError as exc:
            raise _Skip(ImageStatus.NOT_AN_IMAGE, str(exc)) from None

    def _put_by_digest(self, data: bytes) -> Descriptor:
        """Push a manifest under its own digest unless the repository has it already."""
        digest = manifests.sha256_digest(data)
        if self.client.head_manifest(self.repository, digest) is None:
            self.client.put_manifest(self.repository, digest, data, settings.OCI_MANIFEST)
        return Descriptor(settings.OCI_MANIFEST, digest, len(data))

    # ---- the already-indexed check -----------------------------------------------------------

    def _existing_output(
        self, index: ImageIndex | None, platforms: Sequence[_PlatformImage]
    ) -> tuple[str, tuple[str, ...]] | None:
        """(reference, SOCI index digests) when the output tag already holds exactly what
        this run would write, judged without reading a layer: every platform with layers
        to index has a SOCI-enabled manifest derived from it, whose SOCI index covers
        exactly those layers with this run's span size and build tool."""
        if self.client.head_manifest(self.repository, self.output_tag) is None:
            return None
        fetched = self.client.get_manifest(self.repository, self.output_tag)
        existing = self._parse(fetched.data, fetched.media_type)
        if not isinstance(existing, ImageIndex):
            return None
        entries = []
        for image in platforms:
            if not image.candidates:
                continue
            entry = self._existing_entry(existing, image)
            if entry is None:
                return None
            entries.append(entry)
        expected = self._output_index(index, platforms, entries).serialize()
        if manifests.sha256_digest(expected) != fetched.digest:
            return None
        reference = f"{self.client.host}/{self.repository}:{self.output_tag}@{fetched.digest}"
        return reference, tuple(entry.soci_index.digest for entry in entries)

    def _existing_entry(
        self, existing: ImageIndex, image: _PlatformImage
    ) -> IndexedPlatform | None:
        soci_for = {
            desc.annotations.get(manifests.ANNOTATION_IMAGE_MANIFEST_DIGEST): desc
            for desc in existing.manifests
            if manifests.is_soci_index_descriptor(desc)
        }
        for desc in existing.manifests:
            soci_digest = desc.annotations.get(manifests.ANNOTATION_INDEX_DIGEST)
            soci_desc = soci_for.get(desc.digest)
            if soci_digest is None or soci_desc is None or soci_desc.digest != soci_digest:
                continue
            enabled = manifests.soci_enabled_manifest(image.manifest, soci_digest)
            if manifests.sha256_digest(enabled.serialize()) != desc.digest:
                continue
            if self._soci_index_covers(soci_digest, image):
                plain = Descriptor(soci_desc.media_type, soci_desc.digest, soci_desc.size)
                return IndexedPlatform(image.descriptor.digest, desc, plain)
        return None

    def _existing_v1(
        self, platforms: Sequence[_PlatformImage]
    ) -> tuple[str, tuple[str, ...]] | None:
        """(reference, SOCI index digests) when every platform with layers to index is
        already the subject of a v1 SOCI index covering exactly those layers with this
        run's span size and build tool; judged, like v2, without reading a layer."""
        found = []
        for image in platforms:
            if not image.candidates:
                continue
            listed = self._v1_soci_referrers(image.descriptor.digest)
            covering = next((d for d in listed if self._soci_index_covers(d, image)), None)
            if covering is None:
                return None
            found.append(covering)
        return self._source_reference(), tuple(found)

    def _v1_soci_referrers(self, subject: str) -> list[str]:
        """Digests of the v1 SOCI indexes that name ``subject``, from the referrers API
        or, where the registry lacks it, the fallback tag."""
        try:
            return referrers.soci_v1_indexes(self.client, self.repository, subject)
        except ManifestError as exc:
            raise _Skip(ImageStatus.NOT_AN_IMAGE, str(exc)) from None

    def _soci_index_covers(self, soci_digest: str, image: _PlatformImage) -> bool:
        try:
            fetched = self.client.get_manifest(self.repository, soci_digest)
        except RegistryError as exc:
            if exc.status == 404:  # listed, since deleted: a stale referrers entry
                return False
            raise
        soci = self._parse(fetched.data, fetched.media_type)
        if not isinstance(soci, ImageManifest) or not soci.is_soci_index:
            return False
        layers = [ztoc.annotations.get(manifests.ANNOTATION_LAYER_DIGEST) for ztoc in soci.layers]
        spans = {ztoc.annotations.get(manifests.ANNOTATION_SPAN_SIZE) for ztoc in soci.layers}
        return (
            layers == [layer.digest for layer in image.candidates]
            and spans == {str(self.options.span_size)}
            and soci.annotations.get(manifests.ANNOTATION_BUILD_TOOL) == self.options.build_tool
        )

    # ---- results -----------------------------------------------------------------------------

    def _outcome(
        self,
        image: _PlatformImage,
        layer: Descriptor,
        status: LayerStatus,
        reason: str = "",
        ztoc_digest: str | None = None,
        seconds: float = 0.0,
    ) -> LayerOutcome:
        return LayerOutcome(
            str(image.platform),
            layer.digest,
            layer.media_type,
            layer.size,
            status,
            reason,
            ztoc_digest,
            seconds,
        )

    def _result(
        self,
        status: ImageStatus,
        output_reference: str | None,
        platforms: Iterable[_PlatformImage],
        *,
        reason: str = "",
        soci_indexes: tuple[str, ...] = (),
    ) -> ImageResult:
        layers = tuple(
            image.outcomes[layer.digest]
            for image in platforms
            for layer in image.manifest.layers
            if layer.digest in image.outcomes
        )
        return ImageResult(
            repository=self.repository,
            reference=self.reference,
            status=status,
            output_reference=output_reference,
            layers=layers,
            seconds=time.monotonic() - self.started,
            reason=reason,
            soci_indexes=soci_indexes,
            source_digest=self.digest,
        )

    def _image_name(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else f"{self.repository}@{self.digest}"


# ---- small pure helpers --------------------------------------------------------------------


def _split_reference(reference: str) -> tuple[str, str]:
    """``tag``, ``sha256:...`` or ``tag@sha256:...`` -> (tag, digest), either may be ''."""
    tag, _, digest = reference.partition("@")
    if not digest and manifests.is_digest(tag):
        tag, digest = "", tag
    if digest and not manifests.is_digest(digest):
        raise InvalidReference(f"{digest!r} is not a digest (expected sha256:<64 hex>)")
    if tag and not is_valid_tag(tag):
        raise InvalidReference(f"{tag!r} is not a valid tag")
    if not tag and not digest:
        raise InvalidReference("an image reference needs a tag or a digest")
    return tag, digest


def _output_tag(tag: str, digest: str, suffix: str) -> str:
    """``<tag><suffix>``; an image pushed by digest alone gets ``sha256-<hex><suffix>``."""
    output = (tag or manifests.referrers_tag(digest)) + suffix
    if not is_valid_tag(output):
        raise InvalidReference(f"output tag {output!r} is not a valid tag (check the suffix)")
    return output


def _layer_skip(layer: Descriptor, min_size: int) -> tuple[LayerStatus, str] | None:
    if layer.media_type in settings.ZSTD_LAYER_TYPES:
        return LayerStatus.UNSUPPORTED, "zstd layers cannot be indexed by SOCI"
    if layer.media_type not in (*settings.GZIP_LAYER_TYPES, *settings.TAR_LAYER_TYPES):
        return LayerStatus.UNSUPPORTED, f"media type {layer.media_type!r} is not gzip or tar"
    if layer.urls:
        return LayerStatus.UNSUPPORTED, "foreign layer (served from its urls, not the registry)"
    if layer.size < min_size:
        return LayerStatus.TOO_SMALL, f"{layer.size} bytes < minimum {min_size}"
    return None


def _no_layer_reason(platforms: Iterable[_PlatformImage]) -> str:
    counts = Counter(
        outcome.status.value for image in platforms for outcome in image.outcomes.values()
    )
    if not counts:
        return "the image has no layers"
    detail = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return f"no layer could be indexed ({detail})"


def describe(result: ImageResult) -> list[str]:
    """Human-readable lines: the output reference first, then one line per layer."""
    if result.output_reference is not None:
        first = result.output_reference
        if result.status is ImageStatus.ALREADY_INDEXED:
            first += "  (already indexed: nothing pushed)"
    else:
        first = f"nothing pushed: {result.status.value}: {result.reason}"
    lines = [first]
    for layer in result.layers:
        why = f" ({layer.reason})" if layer.reason else ""
        ztoc = f"  zTOC {layer.ztoc_digest}" if layer.ztoc_digest else ""
        lines.append(
            f"  {layer.platform:<16} {layer.digest[:19]}  {_size(layer.size):>10}  "
            f"{layer.status.value}{why}{ztoc}"
        )
    indexed = sum(1 for layer in result.layers if layer.status is LayerStatus.INDEXED)
    lines.append(f"{indexed} of {len(result.layers)} layers indexed in {result.seconds:.1f} s")
    return lines


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB"
    return f"{count / 1024:.1f} KiB"


# ---- backfill: every matching tag of a repository ------------------------------------------


class BackfillOutcome(StrEnum):
    INDEXED = "indexed"  # a SOCI-enabled image was pushed
    SKIPPED = "skipped"  # nothing to do, and the reason says why (already indexed, too small...)
    FAILED = "failed"  # an error, or layers that could not be read: worth a look


@dataclass(frozen=True, slots=True)
class BackfillResult:
    tag: str
    outcome: BackfillOutcome
    detail: str  # indexed: the output reference; skipped: the reason; failed: the error
    image: ImageResult | None = None  # None when the tag was not indexed or the run raised

    def line(self) -> str:
        """``TAG  indexed REF``, ``TAG  skipped REASON`` or ``TAG  failed ERROR``."""
        return f"{self.tag}  {self.outcome.value} {self.detail}"


def tag_matches(tag: str, pattern: str) -> bool:
    """True when ``pattern`` (``*`` matches any text, the rest literally) matches all of ``tag``."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), tag) is not None


def backfill(
    client: RegistryClient,
    repository: str,
    patterns: Sequence[str] = (),
    options: IndexOptions = IndexOptions(),
    on_result: BackfillCallback | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> list[BackfillResult]:
    """Index every tag of ``repository`` that matches one of ``patterns`` (none: every tag).

    Tags are taken in order; ``on_result`` hears of each as soon as it is done.
    Tags ending with ``options.tag_suffix`` are the builder's own output and are
    skipped. A tag that fails is reported and the next one is indexed. Raises
    TagSelectionError for a malformed pattern or when no tag matches, and
    RegistryError when the tags cannot be listed.
    """
    for pattern in patterns:
        if not settings.TAG_FILTER.fullmatch(pattern):
            raise TagSelectionError(
                f"tag pattern {pattern!r} is not {settings.TAG_FILTER_EXPECTED}"
            )
    tags = [
        tag
        for tag in sorted(client.list_tags(repository))
        if not patterns or any(tag_matches(tag, pattern) for pattern in patterns)
    ]
    if not tags:
        wanted = f"matches {', '.join(patterns)}" if patterns else "exists"
        raise TagSelectionError(f"no tag of {repository} {wanted}: nothing to index")
    results = []
    for tag in tags:
        result = _backfill_one(client, repository, tag, options, progress)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _backfill_one(
    client: RegistryClient,
    repository: str,
    tag: str,
    options: IndexOptions,
    progress: ProgressCallback | None,
) -> BackfillResult:
    if tag.endswith(options.tag_suffix):
        return BackfillResult(tag, BackfillOutcome.SKIPPED, SOCI_OUTPUT_TAG)
    try:
        image = index_image(client, repository, tag, options, progress=progress)
    except SociError as exc:
        log.warning("tag %s of %s failed: %s", tag, repository, exc)
        return BackfillResult(tag, BackfillOutcome.FAILED, str(exc))
    if image.status is ImageStatus.INDEXED and image.output_reference is not None:
        return BackfillResult(tag, BackfillOutcome.INDEXED, image.output_reference, image)
    if image.status is ImageStatus.ALREADY_INDEXED:
        detail = f"{image.status.value}: {image.output_reference}"
        return BackfillResult(tag, BackfillOutcome.SKIPPED, detail, image)
    detail = f"{image.status.value.removeprefix('skipped-')}: {image.reason}"
    unreadable = any(layer.status is LayerStatus.CORRUPT for layer in image.layers)
    outcome = BackfillOutcome.FAILED if unreadable else BackfillOutcome.SKIPPED
    return BackfillResult(tag, outcome, detail, image)
