"""Check a SOCI-enabled image the way the snapshotter will read it.

From the image (or index) reference: find each platform's SOCI index through
the ``com.amazon.soci.index-digest`` annotation (v2; the index's SOCI index entry
must name that manifest back through ``com.amazon.soci.image-manifest-digest``),
or among the referrers of the platform's manifest (v1), fetch its zTOCs, and check
each against its layer with range requests: span digests, the gzip header
before the first checkpoint, spans that end exactly at the blob and tar sizes,
and a TOC with no entry left out (the bytes between entries are exactly one
chain of tar headers). Then read a few files lazily, through checkpoints and
span ranges only, and compare them with the same files from a full read.

What a lazy start fetches (manifests, SOCI index, zTOCs, the config, the
sampled files' spans) is counted against the image size: that ratio is the
point of SOCI.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from soci_indexer import settings
from soci_indexer.engine import readback, ztoc
from soci_indexer.engine.ztoc import Compression, FileMetadata, Ztoc
from soci_indexer.errors import ManifestError, RegistryError, SociError
from soci_indexer.oci import manifests, referrers
from soci_indexer.oci.client import RegistryClient
from soci_indexer.oci.manifests import Descriptor, ImageIndex, ImageManifest

BLOCK = 512
SAMPLE_FILES = 3
_HEADER_ONLY = frozenset({"hardlink", "symlink", "char", "block", "dir", "fifo"})
_CHAIN_TYPES = frozenset(b"xLK")  # headers that precede an entry's own header
_INFLATE_STEP = 4 * 1024 * 1024


@dataclass
class LayerCheck:
    platform: str
    layer: Descriptor
    ztoc_digest: str
    spans: int = 0
    files_read: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    reference: str
    layers: list[LayerCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metadata_bytes: int = 0  # manifests, SOCI index, zTOCs, config: what any lazy start reads
    sample_bytes: int = 0  # the spans holding the sampled files, each span once
    files_read: int = 0
    image_bytes: int = 0  # config and layers of the checked platforms

    @property
    def lazy_bytes(self) -> int:
        """What a lazy start that reads the sampled files fetches."""
        return self.metadata_bytes + self.sample_bytes

    @property
    def ok(self) -> bool:
        return not self.problems and all(not layer.problems for layer in self.layers)


def verify_image(
    client: RegistryClient, repository: str, reference: str, *, samples: int = SAMPLE_FILES
) -> VerifyReport:
    """Check every SOCI-enabled platform of ``repository:reference`` (tag, digest or both)."""
    tag, _, digest = reference.rpartition("@") if "@" in reference else (reference, "", "")
    target = digest or tag
    separator = "@" if manifests.is_digest(reference) else ":"
    report = VerifyReport(f"{client.host}/{repository}{separator}{reference}")
    checker = _Checker(client, repository, report, samples)
    fetched = client.get_manifest(repository, target)
    report.metadata_bytes += len(fetched.data)
    top = manifests.parse_manifest(fetched.data, fetched.media_type)
    if isinstance(top, ImageIndex):
        checker.check_index(top)
    elif not checker.check_platform("", top, fetched.digest):
        report.problems.append(
            f"the manifest is not SOCI-enabled: no {manifests.ANNOTATION_INDEX_DIGEST}"
            " annotation (v2) and no SOCI index among its referrers (v1)"
        )
    if not report.layers and not report.problems:
        report.problems.append("no SOCI-enabled manifest found: nothing to verify")
    return report


def describe(report: VerifyReport) -> list[str]:
    """Human-readable lines for ``soci-indexer verify``."""
    lines = [f"verify {report.reference}"]
    lines += [f"  note: {note}" for note in report.notes]
    for check in report.layers:
        state = "ok" if not check.problems else "FAILED"
        lines.append(
            f"  {check.platform or '-':<16} {check.layer.digest[:19]}  {check.spans} spans, "
            f"{check.files_read} files read lazily: {state}"
        )
        lines += [f"    - {problem}" for problem in check.problems]
    lines += [f"  problem: {problem}" for problem in report.problems]
    if report.image_bytes:
        share = 100 * report.lazy_bytes / report.image_bytes
        lines.append(
            f"lazy start fetched {report.lazy_bytes} of {report.image_bytes} bytes ({share:.1f}%): "
            f"{report.metadata_bytes} of manifests, SOCI index and zTOCs, "
            f"{report.sample_bytes} for {report.files_read} sampled files"
        )
    lines.append("verified: OK" if report.ok else "verification FAILED")
    return lines


class _Checker:
    def __init__(
        self, client: RegistryClient, repository: str, report: VerifyReport, samples: int
    ) -> None:
        self.client = client
        self.repository = repository
        self.report = report
        self.samples = samples
        self.fetched: set[tuple[str, int, int]] = set()
        self.sized: set[str] = set()  # image manifests counted in image_bytes

    def manifest(self, reference: str) -> ImageManifest | ImageIndex:
        fetched = self.client.get_manifest(self.repository, reference)
        self.report.metadata_bytes += len(fetched.data)
        return manifests.parse_manifest(fetched.data, fetched.media_type)

    def check_index(self, index: ImageIndex) -> None:
        soci_listed = {d.digest for d in index.manifests if manifests.is_soci_index_descriptor(d)}
        children: dict[str, ImageManifest | ImageIndex] = {}
        for desc in index.manifests:
            if (
                manifests.is_soci_index_descriptor(desc)
                or desc.media_type not in settings.MANIFEST_TYPES
            ):
                continue
            if manifests.is_attestation(desc):
                continue
            child = children[desc.digest] = self.manifest(desc.digest)
            platform = str(desc.platform) if desc.platform else desc.digest
            if not isinstance(child, ImageManifest):
                self.report.notes.append(f"{platform} is not an image manifest (left as pushed)")
                continue
            soci_digest = child.annotations.get(manifests.ANNOTATION_INDEX_DIGEST)
            if soci_digest is not None and soci_digest not in soci_listed:
                self.report.problems.append(
                    f"{platform}: its SOCI index is not listed in the index"
                )
            if not self.check_platform(platform, child, desc.digest):
                self.report.notes.append(f"{platform} is not SOCI-enabled (left as pushed)")
        for desc in index.manifests:
            if manifests.is_soci_index_descriptor(desc):
                self._check_binding(desc, children)

    def _check_binding(
        self, soci: Descriptor, listed: dict[str, ImageManifest | ImageIndex]
    ) -> None:
        """A SOCI index entry names the image manifest it belongs to; that manifest must be
        in the repository and name this SOCI index back."""
        key = manifests.ANNOTATION_IMAGE_MANIFEST_DIGEST
        named = soci.annotations.get(key)
        if not named:
            self.report.problems.append(
                f"SOCI index {soci.digest} has no {key} annotation: it belongs to no image"
            )
            return
        stated = f"SOCI index {soci.digest} names image manifest {named} ({key})"
        image = listed.get(named)
        if image is None:
            try:
                fetched = self.client.get_manifest(self.repository, named)
                image = manifests.parse_manifest(fetched.data, fetched.media_type)
            except RegistryError as exc:
                if exc.status != 404:
                    raise
                self.report.problems.append(f"{stated}, which the repository does not have")
                return
            except ManifestError:
                self.report.problems.append(f"{stated}, which is not a manifest")
                return
        back = image.annotations.get(manifests.ANNOTATION_INDEX_DIGEST)
        if not isinstance(image, ImageManifest) or back != soci.digest:
            self.report.problems.append(
                f"{stated}, whose {manifests.ANNOTATION_INDEX_DIGEST} is not this SOCI index"
            )

    def check_platform(self, platform: str, image: ImageManifest, digest: str) -> bool:
        """Check the SOCI index of the image manifest ``digest``: the one its
        ``com.amazon.soci.index-digest`` names (v2), else those that name it as their
        ``subject`` (v1). False when it has none."""
        soci_digest = image.annotations.get(manifests.ANNOTATION_INDEX_DIGEST)
        if soci_digest is not None:
            self._check_soci_index(platform, image, digest, soci_digest)
            return True
        found = False
        for listed in referrers.soci_v1_indexes(self.client, self.repository, digest):
            if self.client.head_manifest(self.repository, listed) is None:
                self.report.notes.append(
                    f"{platform or digest}: SOCI index {listed} is listed among its referrers"
                    " but not in the repository (a stale entry)"
                )
                continue
            found = True
            self._check_soci_index(platform, image, digest, listed, v1=True)
        return found

    def _check_soci_index(
        self,
        platform: str,
        image: ImageManifest,
        digest: str,
        soci_digest: str,
        *,
        v1: bool = False,
    ) -> None:
        soci = self.manifest(soci_digest)
        if not isinstance(soci, ImageManifest) or not soci.is_soci_index:
            self.report.problems.append(f"{soci_digest} is not a SOCI index manifest")
            return
        if v1 and (soci.subject is None or soci.subject.digest != digest):
            self.report.problems.append(
                f"SOCI index {soci_digest} is listed among the referrers of {digest}"
                " but its subject is not that manifest"
            )
            return
        if digest not in self.sized:  # once per image, however many v1 indexes it has
            self.sized.add(digest)
            self.report.metadata_bytes += image.config.size
            self.report.image_bytes += image.config.size + sum(layer.size for layer in image.layers)
        layers = {layer.digest: layer for layer in image.layers}
        for ztoc_desc in soci.layers:
            layer_digest = ztoc_desc.annotations.get(manifests.ANNOTATION_LAYER_DIGEST, "")
            layer = layers.get(layer_digest)
            if layer is None:
                self.report.problems.append(
                    f"zTOC {ztoc_desc.digest} is for {layer_digest or 'no layer'}, "
                    "which the image does not have"
                )
                continue
            check = LayerCheck(platform, layer, ztoc_desc.digest)
            self.report.layers.append(check)
            try:
                self._check_layer(check, ztoc_desc)
            except SociError as exc:
                check.problems.append(str(exc))

    def _check_layer(self, check: LayerCheck, ztoc_desc: Descriptor) -> None:
        data = self.client.get_blob(self.repository, ztoc_desc.digest)
        self.report.metadata_bytes += len(data)
        if manifests.sha256_digest(data) != ztoc_desc.digest:
            check.problems.append("the zTOC blob does not hash to its digest")
            return
        parsed = ztoc.parse(data)
        layer = check.layer
        if parsed.compressed_archive_size != layer.size:
            check.problems.append(
                f"zTOC says the layer has {parsed.compressed_archive_size} bytes, "
                f"the manifest says {layer.size}"
            )
            return
        check.spans = self._check_spans(check, parsed)
        self._check_toc_order(check, parsed)
        if not check.problems:
            self._check_against_full_read(check, parsed)

    # ---- spans -------------------------------------------------------------------------------

    def _check_spans(self, check: LayerCheck, parsed: Ztoc) -> int:
        info = parsed.compression
        spans = readback.spans(parsed)
        if not len(spans) == info.max_span_id + 1 == len(info.span_digests):
            check.problems.append(
                f"{len(spans)} checkpoints, max_span_id {info.max_span_id}, "
                f"{len(info.span_digests)} span digests: these must agree"
            )
            return len(spans)
        readback.check_gzip_header(parsed, self._fetch(check.layer.digest, counted=False))
        for number, span in enumerate(spans):
            c_start, c_end = span.compressed_start, span.compressed_end
            if not (c_start < c_end and span.uncompressed_start < span.uncompressed_end):
                check.problems.append(f"span {number} is empty or reversed")
                continue
            piece = self.client.get_blob_range(self.repository, check.layer.digest, c_start, c_end)
            if "sha256:" + hashlib.sha256(piece).hexdigest() != info.span_digests[number]:
                check.problems.append(f"span {number} does not match its digest")
        last = spans[-1] if spans else None
        if last is not None and last.compressed_end != check.layer.size:
            check.problems.append(f"the last span ends at {last.compressed_end}, not the blob size")
        gzip = info.algorithm is Compression.GZIP
        if gzip and last is not None and last.uncompressed_end != parsed.uncompressed_archive_size:
            check.problems.append("the last span does not end at the tar's end")
        return len(spans)

    # ---- the TOC -----------------------------------------------------------------------------

    def _check_toc_order(self, check: LayerCheck, parsed: Ztoc) -> None:
        previous = -1
        for entry in parsed.metadata:
            if entry.uncompressed_offset <= previous:
                check.problems.append(f"TOC entry {entry.name!r} is out of order")
                return
            if entry.uncompressed_offset + _data_size(entry) > parsed.uncompressed_archive_size:
                check.problems.append(f"TOC entry {entry.name!r} ends past the tar")
                return
            previous = entry.uncompressed_offset

    def _check_against_full_read(self, check: LayerCheck, parsed: Ztoc) -> None:
        """One full read: header chains between entries, and the sampled files' bytes.

        Both sides of the comparison are digests taken as the bytes stream past, so memory
        stays bounded by the span size however large a sampled file is."""
        gaps = _gaps(parsed.metadata)
        sample = _sample(parsed.metadata, self.samples)
        chains = [_HeaderChain() for _ in gaps]
        full_reads = [hashlib.sha256() for _ in sample]
        ranges = [
            *gaps,
            *((e.uncompressed_offset, e.uncompressed_offset + e.uncompressed_size) for e in sample),
        ]
        sinks = [*(chain.feed for chain in chains), *(digest.update for digest in full_reads)]
        blob = self.client.stream_blob(self.repository, check.layer.digest)
        gzip = parsed.compression.algorithm is Compression.GZIP
        try:
            _feed(_inflate(blob) if gzip else blob, ranges, sinks)
        except zlib.error as exc:
            check.problems.append(f"the layer does not decompress: {exc}")
            return
        for index, (entry, chain) in enumerate(zip(parsed.metadata, chains, strict=True)):
            if not chain.ok:
                check.problems.append(
                    f"the bytes before TOC entry {index} ({entry.name!r}) "
                    "are not one chain of tar headers"
                )
                return
        for entry, full in zip(sample, full_reads, strict=True):
            lazy = hashlib.sha256()
            fetch = self._fetch(check.layer.digest, counted=True)
            for piece in readback.entry_chunks(parsed, entry, fetch):
                lazy.update(piece)
            if lazy.digest() != full.digest():
                check.problems.append(f"{entry.name!r} read lazily differs from a full read")
            check.files_read += 1
            self.report.files_read += 1

    def _fetch(self, digest: str, *, counted: bool) -> readback.Fetch:
        """Range reads of a layer; ``counted`` ones add to what a lazy start fetched
        (each span once: the snapshotter keeps the spans it has fetched)."""

        def fetch(start: int, end: int) -> bytes:
            data = self.client.get_blob_range(self.repository, digest, start, end)
            if counted and (digest, start, end) not in self.fetched:
                self.fetched.add((digest, start, end))  # the snapshotter caches spans it has
                self.report.sample_bytes += len(data)
            return data

        return fetch


# ---- the tar side, parsed here rather than by the builder's reader it is checking ----------


def _data_size(entry: FileMetadata) -> int:
    return 0 if entry.type in _HEADER_ONLY else entry.uncompressed_size


def _gaps(entries: Sequence[FileMetadata]) -> list[tuple[int, int]]:
    """For each entry, the bytes from the end of the previous entry's padded data to its own
    data: exactly its headers."""
    gaps = []
    previous_end = 0
    for entry in entries:
        gaps.append((previous_end, entry.uncompressed_offset))
        data_end = entry.uncompressed_offset + _data_size(entry)
        previous_end = -(-data_end // BLOCK) * BLOCK
    return gaps


class _HeaderChain:
    """Whether the bytes fed, a piece at a time, are PAX ``x`` / GNU ``L``/``K`` headers with
    their data, then exactly one entry header. Holds one block, never the header data."""

    def __init__(self) -> None:
        self._block = bytearray()
        self._skip = 0  # data (and padding) of the last x/L/K header still to pass
        self._state = "open"  # "closed" after the entry's own header, "bad" on any fault

    @property
    def ok(self) -> bool:
        return self._state == "closed"

    def feed(self, piece: memoryview) -> None:
        position = 0
        while position < len(piece) and self._state != "bad":
            if self._state == "closed":  # bytes after the entry header
                self._state = "bad"
            elif self._skip:
                step = min(self._skip, len(piece) - position)
                self._skip -= step
                position += step
            else:
                take = min(BLOCK - len(self._block), len(piece) - position)
                self._block += piece[position : position + take]
                position += take
                if len(self._block) == BLOCK:
                    self._header(bytes(self._block))
                    self._block.clear()

    def _header(self, block: bytes) -> None:
        size = _octal(block[124:136])
        if not _checksum_ok(block) or size is None:
            self._state = "bad"
        elif block[156] not in _CHAIN_TYPES:
            self._state = "closed"
        else:
            self._skip = -(-size // BLOCK) * BLOCK


def _checksum_ok(block: bytes) -> bool:
    stored = _octal(block[148:156])
    blanked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return stored is not None and stored in (unsigned, signed)


def _octal(field: bytes) -> int | None:
    if field and field[0] & 0x80:  # base-256
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def _sample(entries: Sequence[FileMetadata], count: int) -> list[FileMetadata]:
    """Up to ``count`` regular files with data: the first, the largest, the last..."""
    files = [e for e in entries if e.type == "reg" and e.uncompressed_size > 0]
    if len(files) <= count:
        return files
    largest = max(files, key=lambda e: e.uncompressed_size)
    picks = [files[0], largest, files[-1], *files[1 : len(files) - 1 : max(1, len(files) // count)]]
    chosen: dict[int, FileMetadata] = {}
    for entry in picks:
        chosen.setdefault(entry.uncompressed_offset, entry)
        if len(chosen) == count:
            break
    return sorted(chosen.values(), key=lambda e: e.uncompressed_offset)


def _inflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """gzip members one after another, decompressed with bounded output per step."""
    inflater = zlib.decompressobj(47)
    fed = False
    for chunk in chunks:
        data = chunk
        while data:
            fed = True
            out = inflater.decompress(data, _INFLATE_STEP)
            if out:
                yield out
            if inflater.eof:
                data = inflater.unused_data
                inflater = zlib.decompressobj(47)
                fed = False
            else:
                data = inflater.unconsumed_tail
    if fed and not inflater.eof:
        raise zlib.error("the gzip stream ends before its last member does")


def _feed(
    stream: Iterable[bytes],
    ranges: Sequence[tuple[int, int]],
    sinks: Sequence[Callable[[memoryview], object]],
) -> None:
    """Hand ``sinks[i]`` the bytes of ``ranges[i]`` (``[start, end)``) of a stream read once,
    a piece at a time, in stream order; the stream is read to its end."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    offset = 0
    next_index = 0
    active: list[int] = []
    for chunk in stream:
        view = memoryview(chunk)
        chunk_end = offset + len(chunk)
        while next_index < len(order) and ranges[order[next_index]][0] < chunk_end:
            active.append(order[next_index])
            next_index += 1
        for index in active:
            start, end = ranges[index]
            low, high = max(start, offset), min(end, chunk_end)
            if low < high:
                sinks[index](view[low - offset : high - offset])
        active = [i for i in active if ranges[i][1] > chunk_end]
        offset = chunk_end
