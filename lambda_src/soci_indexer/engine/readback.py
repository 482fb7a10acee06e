"""Reading files back through a zTOC, as the snapshotter does (SOCI-FORMAT.md 2.3, 4).

Nothing here sees the whole layer: ``fetch(start, end)`` returns compressed
bytes ``[start, end)`` (an HTTP range request, a file read), and only the
spans holding the wanted bytes are fetched, each checked against its digest
before it is used.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from soci_indexer.engine.inflate import gzip_header_length, inflate_span
from soci_indexer.engine.ztoc import (
    Checkpoint,
    Compression,
    FileMetadata,
    Ztoc,
    parse_gzip_zinfo,
    parse_tar_zinfo,
    span_start,
)
from soci_indexer.errors import CorruptLayer, ZtocFormatError

Fetch = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class Span:
    index: int
    compressed_start: int
    compressed_end: int  # exclusive
    uncompressed_start: int
    uncompressed_end: int  # exclusive
    digest: str  # "sha256:<hex>" of the compressed bytes


def spans(ztoc: Ztoc) -> list[Span]:
    """The zTOC's spans; ZtocFormatError where the snapshotter would refuse them."""
    return _layout(ztoc).spans


def read_entry(ztoc: Ztoc, entry: FileMetadata, fetch: Fetch) -> bytes:
    """The content of ``entry``, from the spans that hold it and nothing else.

    Raises CorruptLayer when a fetched span does not match its digest or
    does not inflate, ZtocFormatError when the zTOC does not cover the entry.
    """
    return b"".join(entry_chunks(ztoc, entry, fetch))


def entry_chunks(ztoc: Ztoc, entry: FileMetadata, fetch: Fetch) -> Iterator[bytes]:
    """``read_entry`` a span at a time: memory bounded by the span size, not the file's.

    The spans' coverage is checked before the first fetch; errors as ``read_entry``.
    """
    start = entry.uncompressed_offset
    end = start + entry.uncompressed_size
    if end <= start:
        return
    layout = _layout(ztoc)
    needed = layout.covering(start, end)
    if not needed or needed[0].uncompressed_start > start or needed[-1].uncompressed_end < end:
        raise ZtocFormatError(f"the spans do not cover {entry.name!r} at [{start}, {end})")
    for span in needed:
        data = _fetch_span(span, fetch, ztoc.compression.algorithm)
        first = max(start, span.uncompressed_start) - span.uncompressed_start
        last = min(end, span.uncompressed_end) - span.uncompressed_start
        if layout.checkpoints:
            data = inflate_span(data, layout.checkpoints[span.index], last)
        yield data[first:last]


def check_gzip_header(ztoc: Ztoc, fetch: Fetch) -> None:
    """Check that the bytes before the first span parse as a gzip header.

    Nothing to check for uncompressed layers. Raises CorruptLayer.
    """
    checkpoints = _layout(ztoc).checkpoints
    if not checkpoints:
        return
    header_end = checkpoints[0].compressed_offset
    header = fetch(0, header_end)
    if gzip_header_length(header) != header_end:
        raise CorruptLayer(
            f"the layer's first {header_end} bytes are not a gzip header", 0, stream="gzip"
        )


def _fetch_span(span: Span, fetch: Fetch, algorithm: Compression) -> bytes:
    stream = "gzip" if algorithm is Compression.GZIP else "tar"
    data = fetch(span.compressed_start, span.compressed_end)
    if len(data) != span.compressed_end - span.compressed_start:
        raise CorruptLayer(
            f"span {span.index}: fetched {len(data)} bytes,"
            f" expected {span.compressed_end - span.compressed_start}",
            span.compressed_start,
            stream,
        )
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest != span.digest:
        raise CorruptLayer(
            f"span {span.index}: digest {digest} does not match the zTOC's {span.digest}",
            span.compressed_start,
            stream,
        )
    return data


class _Layout:
    """A zTOC's spans in uncompressed order, with the gzip checkpoints they start at."""

    def __init__(self, spans: list[Span], checkpoints: list[Checkpoint]) -> None:
        self.spans = spans
        self.checkpoints = checkpoints
        self._starts = [span.uncompressed_start for span in spans]

    def covering(self, start: int, end: int) -> list[Span]:
        """The spans that hold bytes of ``[start, end)``."""
        first = max(bisect.bisect_right(self._starts, start) - 1, 0)
        last = bisect.bisect_left(self._starts, end)
        return self.spans[first:last]


_last_layout: tuple[Ztoc, _Layout] | None = None


def _layout(ztoc: Ztoc) -> _Layout:
    """Spans and checkpoints of ``ztoc``, decoded once for a run of calls on the same zTOC."""
    global _last_layout
    cached = _last_layout
    if cached is not None and cached[0] is ztoc:
        return cached[1]
    if ztoc.compression.algorithm is Compression.GZIP:
        layout = _gzip_layout(ztoc)
    else:
        layout = _Layout(_tar_spans(ztoc), [])
    _check_spans(layout.spans)
    _last_layout = (ztoc, layout)
    return layout


def _gzip_layout(ztoc: Ztoc) -> _Layout:
    _, checkpoints = parse_gzip_zinfo(ztoc.compression.checkpoints)
    _check_count(ztoc, len(checkpoints))
    compressed_ends = [point.compressed_offset for point in checkpoints[1:]]
    uncompressed_ends = [point.uncompressed_offset for point in checkpoints[1:]]
    compressed_ends.append(ztoc.compressed_archive_size)
    uncompressed_ends.append(ztoc.uncompressed_archive_size)
    spans = [
        Span(index, span_start(point), compressed_end, point.uncompressed_offset, end, digest)
        for index, (point, compressed_end, end, digest) in enumerate(
            zip(
                checkpoints,
                compressed_ends,
                uncompressed_ends,
                ztoc.compression.span_digests,
                strict=True,
            )
        )
    ]
    return _Layout(spans, checkpoints)


def _tar_spans(ztoc: Ztoc) -> list[Span]:
    """Fixed-size spans over the raw tar (SOCI-FORMAT.md 2.4)."""
    zinfo = parse_tar_zinfo(ztoc.compression.checkpoints)
    if zinfo.span_size <= 0 or zinfo.size != ztoc.compressed_archive_size:
        raise ZtocFormatError(
            f"tar checkpoint info (span size {zinfo.span_size}, size {zinfo.size})"
            f" does not fit a layer of {ztoc.compressed_archive_size} bytes"
        )
    _check_count(ztoc, -(-zinfo.size // zinfo.span_size))
    layout = []
    for index, digest in enumerate(ztoc.compression.span_digests):
        start = index * zinfo.span_size
        end = min(start + zinfo.span_size, zinfo.size)
        layout.append(Span(index, start, end, start, end, digest))
    return layout


def _check_count(ztoc: Ztoc, count: int) -> None:
    info = ztoc.compression
    if not count or info.max_span_id != count - 1 or len(info.span_digests) != count:
        raise ZtocFormatError(
            f"{count} spans, but max_span_id {info.max_span_id}"
            f" and {len(info.span_digests)} span digests"
        )


def _check_spans(spans: list[Span]) -> None:
    for span in spans:
        if not (
            0 <= span.compressed_start < span.compressed_end
            and 0 <= span.uncompressed_start < span.uncompressed_end
        ):
            raise ZtocFormatError(
                f"span {span.index} is empty or reversed: compressed"
                f" [{span.compressed_start}, {span.compressed_end}), uncompressed"
                f" [{span.uncompressed_start}, {span.uncompressed_end})"
            )
