"""One streaming pass: layer bytes in, zTOC out (inflate || tar reader || digests).

The layer is read once, in chunks, and never held whole. Three stages run on
their own threads, joined by bounded queues: inflate (libz through ctypes,
which releases the GIL), the tar header reader (fed the inflated output) and
hashing (hashlib releases the GIL on large buffers), which computes the span
digests and the digest of the whole blob. On two cores inflating and hashing
overlap with the Python work of parsing headers, and the tar thread also lays
out each entry's zTOC strings, so that little is left to do at the end.
"""

from __future__ import annotations

import hashlib
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, BinaryIO, Generic, Literal, TypeVar

from soci_indexer import settings
from soci_indexer.engine.inflate import GzipCheckpointer
from soci_indexer.engine.tar import TarReader
from soci_indexer.engine.ztoc import (
    Compression,
    CompressionInfo,
    PreparedEntry,
    TarZinfo,
    Ztoc,
    prepare_entry,
    serialize,
    serialize_gzip_zinfo,
    serialize_tar_zinfo,
    span_start,
)
from soci_indexer.errors import CorruptLayer, UnsupportedLayer

CompressionChoice = Literal["auto", "gzip", "uncompressed"]

READ_SIZE = 2 * 1024 * 1024  # input chunk: each costs the inflate thread a GIL hand-off
READ_AHEAD = 3  # chunks read ahead of their first consumer (inflate, or the tar reader)
HASH_QUEUE = 4  # chunks waiting to be hashed (the tar reader is bounded by output buffers)
GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSIONS = {
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ZtocBuild:
    ztoc: Ztoc
    data: bytes  # serialized zTOC
    digest: str  # "sha256:<hex>" of data
    layer_digest: str  # "sha256:<hex>" of every input byte, as read
    layer_size: int  # input bytes read


def build_ztoc(
    source: BinaryIO | Iterable[bytes],
    *,
    span_size: int = settings.DEFAULT_SPAN_SIZE,
    build_tool: str = settings.DEFAULT_BUILD_TOOL,
    compression: CompressionChoice = "auto",
    progress: Callable[[int], None] | None = None,
) -> ZtocBuild:
    """Index a layer read once from ``source`` (a binary stream or chunks).

    Raises UnsupportedLayer / CorruptLayer (both LayerError) for layers that
    cannot be indexed. ``progress`` is called with the count of input bytes
    consumed so far, from the reading thread. While this is the only build
    running in the process, the process-wide GIL switch interval is lowered to
    ``SWITCH_INTERVAL``; the interval found is put back when a second build
    starts or this one ends.
    """
    if span_size <= 0:
        raise ValueError(f"span size must be positive, got {span_size}")
    chunks = _read_chunks(source)
    first = next(chunks, b"")
    if not first:
        raise CorruptLayer("the layer is empty", 0, stream="layer")
    algorithm = _compression_of(first, compression)
    build = _GzipBuild(span_size) if algorithm is Compression.GZIP else _TarBuild(span_size)
    build.run(chain([first], chunks), progress)
    ztoc = Ztoc(
        build_tool_identifier=build_tool,
        compressed_archive_size=build.layer_size,
        uncompressed_archive_size=build.archive_size,
        metadata=tuple(build.tar.entries),
        compression=build.compression_info(),
    )
    data = serialize(ztoc, prepared=build.prepared)
    return ZtocBuild(
        ztoc=ztoc,
        data=data,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        layer_digest=build.hashes.layer_digest,
        layer_size=build.layer_size,
    )


def _read_chunks(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """The source as chunks of about READ_SIZE bytes (small HTTP pieces are joined)."""
    if hasattr(source, "read"):
        while chunk := source.read(READ_SIZE):
            yield bytes(chunk)
        return
    pending: list[bytes] = []
    size = 0
    for piece in source:
        pending.append(bytes(piece))
        size += len(piece)
        if size >= READ_SIZE:
            yield b"".join(pending)
            pending.clear()
            size = 0
    if size:
        yield b"".join(pending)


def _compression_of(first: bytes, choice: CompressionChoice) -> Compression:
    if choice == "gzip":
        return Compression.GZIP
    if choice == "uncompressed":
        return Compression.UNCOMPRESSED
    if first.startswith(GZIP_MAGIC):
        return Compression.GZIP
    for magic, name in _OTHER_COMPRESSIONS.items():
        if first.startswith(magic):
            raise UnsupportedLayer(f"{name}-compressed layers cannot be indexed", 0, "layer")
    return Compression.UNCOMPRESSED


class _SpanHashes:
    """The digest of the whole blob, and of each span's compressed bytes.

    Fed the blob in order, with the span boundaries found in each chunk: a
    span may start one byte before the previous one ends (SOCI-FORMAT.md 2.3).
    Bytes before the first span (a gzip header) belong to no span.

    The last span can be folded into the one before (``merge_last_span``):
    for that, the previous span's hash state is kept as it was at its end,
    with the current span's bytes from there on (at most one span's worth).
    """

    def __init__(self) -> None:
        self.digests: list[str] = []
        self._layer = hashlib.sha256()
        self._span: hashlib._Hash | None = None
        self._previous: hashlib._Hash | None = None
        self._since_previous: list[memoryview] = []
        self._position = 0
        self._last_byte = b""

    def update(self, chunk: bytes, boundaries: Iterable[tuple[int, int]]) -> None:
        """Hash ``chunk``; each boundary is (previous span's end, next span's start)."""
        self._layer.update(chunk)
        view = memoryview(chunk)
        base = self._position
        cursor = since = 0
        for end, start in boundaries:
            if self._span is not None:
                self._span.update(view[cursor : end - base])
                self._previous = self._span.copy()
                self.digests.append(_digest(self._span))
            self._span = hashlib.sha256()
            self._since_previous = []
            if start < base:  # the shared byte ended the previous chunk
                self._span.update(self._last_byte)
            cursor = max(start - base, 0)
            since = end - base
        if self._span is not None:
            self._span.update(view[cursor:])
            self._since_previous.append(view[since:])
        self._position += len(chunk)
        self._last_byte = chunk[-1:]

    def finish(self) -> None:
        if self._span is not None:
            self.digests.append(_digest(self._span))
            self._span = None

    def merge_last_span(self) -> None:
        """The last boundary is dropped: the span before it now runs to the end."""
        if self._previous is None:
            raise ValueError("there is no span before the last one")
        for piece in self._since_previous:
            self._previous.update(piece)
        self.digests[-2:] = [_digest(self._previous)]

    @property
    def layer_digest(self) -> str:
        return _digest(self._layer)


def _digest(hasher: hashlib._Hash) -> str:
    return "sha256:" + hasher.hexdigest()


SWITCH_INTERVAL = 0.0001  # seconds; CPython's default is 0.005
# Shorten it only while one build runs: with several at once (the pipeline indexes up to
# four layers of an image together) the default serves them as well or better
# (bench/switch_bench.py measures both).
SHORTEN_ONLY_ALONE = True
_switches_lock = threading.Lock()
_switches_users = 0
_switches_saved = 0.0


def _set_switch_interval() -> None:
    """The interval for the number of builds now running (the lock held)."""
    alone = _switches_users == 1 or not SHORTEN_ONLY_ALONE
    shorten = _switches_users > 0 and alone
    sys.setswitchinterval(min(_switches_saved, SWITCH_INTERVAL) if shorten else _switches_saved)


@contextmanager
def _prompt_thread_switches() -> Iterator[None]:
    """Shorten the GIL switch interval while a build runs alone (process-wide; the
    interval found before the first build is restored when the last one ends).

    The inflate and hash threads spend their time in C without the GIL and
    need it only for moments between calls, while the tar thread runs Python
    without pause. With the default interval each of those moments can wait
    5 ms behind the tar thread, which leaves a core idle. With other builds
    running there are other threads ready to use that core.
    """
    global _switches_users, _switches_saved
    with _switches_lock:
        if not _switches_users:
            _switches_saved = sys.getswitchinterval()
        _switches_users += 1
        _set_switch_interval()
    try:
        yield
    finally:
        with _switches_lock:
            _switches_users -= 1
            _set_switch_interval()


class _Worker(threading.Thread, Generic[T]):
    """Runs ``handle`` on each item put in its inbox, in order, on its own thread.

    After the first failure anywhere (the ``failed`` event is shared) it
    stops working but keeps draining its inbox, passing items to
    ``discard``, so that no producer waits forever. ``finish`` runs after the
    last item unless something failed; ``then`` runs at the end in any case.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[T], None],
        failed: threading.Event,
        *,
        capacity: int = 0,
        finish: Callable[[], None] = lambda: None,
        discard: Callable[[T], None] = lambda item: None,
        then: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.error: BaseException | None = None
        self._inbox: queue.Queue[T | None] = queue.Queue(capacity)
        self._handle = handle
        self._failed = failed
        self._finish = finish
        self._discard = discard
        self._then = then

    def put(self, item: T) -> None:
        self._inbox.put(item)

    def close(self) -> None:
        self._inbox.put(None)

    def run(self) -> None:
        try:
            while (item := self._inbox.get()) is not None:
                if self._failed.is_set():
                    self._discard(item)
                else:
                    self._attempt(self._handle, item)
            if not self._failed.is_set():
                self._attempt(self._finish)
        finally:
            self._then()

    def _attempt(self, function: Callable[..., None], *args: object) -> None:
        try:
            function(*args)
        except BaseException as exc:  # handed to the calling thread through .error
            self.error = exc
            self._failed.set()


class _Build:
    """The read loop and the shutdown both layer kinds share.

    Subclasses start their workers (first the one whose failure says most),
    take each chunk in ``_accept`` and close their inputs in ``_close``.
    """

    def __init__(self, span_size: int) -> None:
        self.span_size = span_size
        self.tar = TarReader()
        self.prepared: list[PreparedEntry | None] = []  # zTOC bytes of each entry read so far
        self.hashes = _SpanHashes()
        self.layer_size = 0
        self.archive_size = 0
        self.failed = threading.Event()
        self.workers: list[_Worker[Any]] = []

    def _hash_worker(self) -> _Worker[tuple[bytes, list[tuple[int, int]]]]:
        """The thread hashing compressed bytes: the whole layer and each span."""
        return _Worker[tuple[bytes, list[tuple[int, int]]]](
            "soci-hash",
            lambda item: self.hashes.update(*item),
            self.failed,
            capacity=HASH_QUEUE,
            finish=self.hashes.finish,
        )

    def run(self, chunks: Iterable[bytes], progress: Callable[[int], None] | None) -> None:
        with _prompt_thread_switches():
            self._run(chunks, progress)
        self._check()

    def _run(self, chunks: Iterable[bytes], progress: Callable[[int], None] | None) -> None:
        for worker in self.workers:
            worker.start()
        try:
            for chunk in chunks:
                if self.failed.is_set():
                    break
                self._accept(chunk)
                self.layer_size += len(chunk)
                if progress is not None:
                    progress(self.layer_size)
        except BaseException:
            self.failed.set()
            raise
        finally:
            self._close()
            for worker in self.workers:
                worker.join()
        for worker in self.workers:
            if worker.error is not None:
                raise worker.error

    def _read_tar(self, data: bytes | memoryview, offset: int) -> None:
        """Feed the tar reader, and lay out the zTOC bytes of the entries it found meanwhile:
        work the tar thread has time for, which would otherwise wait for the last entry."""
        self.tar.feed(data, offset)
        self.prepared.extend(map(prepare_entry, self.tar.entries[len(self.prepared) :]))

    def _accept(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _check(self) -> None:
        """Refuse what the snapshotter would refuse."""

    def compression_info(self) -> CompressionInfo:
        raise NotImplementedError


class _GzipBuild(_Build):
    """inflate -> (tar reader, hashes): the inflate thread feeds both."""

    def __init__(self, span_size: int) -> None:
        super().__init__(span_size)
        self.inflater = GzipCheckpointer(span_size, self._on_output)
        self.inflate_worker = _Worker[bytes](
            "soci-inflate",
            self._inflate,
            self.failed,
            capacity=READ_AHEAD,
            finish=self.inflater.finish,
            then=self._inflate_done,
        )
        self.tar_worker = _Worker[tuple[memoryview, int]](
            "soci-tar",
            self._read_output,
            self.failed,
            finish=self._finish_tar,
            discard=lambda item: self.inflater.release_output(),
        )
        self.hash_worker = self._hash_worker()
        self.workers = [self.inflate_worker, self.tar_worker, self.hash_worker]

    def _accept(self, chunk: bytes) -> None:
        self.inflate_worker.put(chunk)

    def _close(self) -> None:
        self.inflate_worker.close()

    def _inflate(self, chunk: bytes) -> None:
        taken = len(self.inflater.checkpoints)
        self.inflater.feed(chunk)
        boundaries = [
            (point.compressed_offset, span_start(point))
            for point in self.inflater.checkpoints[taken:]
        ]
        self.hash_worker.put((chunk, boundaries))

    def _on_output(self, view: memoryview, offset: int) -> None:
        self.tar_worker.put((view, offset))

    def _inflate_done(self) -> None:
        self.inflater.close()
        self.tar_worker.close()
        self.hash_worker.close()

    def _read_output(self, item: tuple[memoryview, int]) -> None:
        try:
            self._read_tar(*item)
        finally:
            self.inflater.release_output()

    def _finish_tar(self) -> None:
        self.archive_size = self.tar.close(self.inflater.uncompressed_size)

    def _check(self) -> None:
        """Keep every span non-empty, as the snapshotter requires (SOCI-FORMAT.md 2.3).

        A checkpoint can fall at or past the tar archive's end: at the very
        end of the data when the gzip writer closes with an empty final block
        (Go's does), or in GNU tar's record padding. The reference builder
        keeps it, leaving a last span with nothing in it; we fold that span
        into the one before. More than a span of data after the archive's end
        is not worth indexing.
        """
        if not self.archive_size:
            raise CorruptLayer("the gzip stream holds no tar data", 0, stream="gzip")
        checkpoints = self.inflater.checkpoints
        past_end = sum(point.uncompressed_offset >= self.archive_size for point in checkpoints)
        if past_end > 1:
            raise UnsupportedLayer(
                "more than a span of gzip data follows the end of the tar archive",
                self.archive_size,
            )
        if past_end:
            checkpoints.pop()
            self.hashes.merge_last_span()

    def compression_info(self) -> CompressionInfo:
        checkpoints = self.inflater.checkpoints
        info = CompressionInfo(
            algorithm=Compression.GZIP,
            max_span_id=len(checkpoints) - 1,
            span_digests=tuple(self.hashes.digests),
            checkpoints=serialize_gzip_zinfo(self.span_size, checkpoints),
        )
        # The windows (32 KiB a span) now live in the blob; holding them twice more
        # through serialisation is what made peak memory grow with the layer.
        checkpoints.clear()
        return info


class _TarBuild(_Build):
    """The reading thread feeds the tar reader and the hashes: nothing to inflate."""

    def __init__(self, span_size: int) -> None:
        super().__init__(span_size)
        self.tar_worker = _Worker[tuple[bytes, int]](
            "soci-tar",
            lambda item: self._read_tar(*item),
            self.failed,
            capacity=READ_AHEAD,
            finish=self._finish_tar,
        )
        self.hash_worker = self._hash_worker()
        self.workers = [self.tar_worker, self.hash_worker]

    def _accept(self, chunk: bytes) -> None:
        """Spans are fixed ranges of the raw tar; a span starts only where a byte follows."""
        offset, span = self.layer_size, self.span_size
        first = -(-offset // span) * span
        starts = range(first, offset + len(chunk), span)
        self.tar_worker.put((chunk, offset))
        self.hash_worker.put((chunk, [(start, start) for start in starts]))

    def _close(self) -> None:
        self.tar_worker.close()
        self.hash_worker.close()

    def _finish_tar(self) -> None:
        self.archive_size = self.tar.close(self.layer_size)

    def compression_info(self) -> CompressionInfo:
        size = self.layer_size
        return CompressionInfo(
            algorithm=Compression.UNCOMPRESSED,
            max_span_id=(size - 1) // self.span_size,
            span_digests=tuple(self.hashes.digests),
            checkpoints=serialize_tar_zinfo(TarZinfo(self.span_size, size)),
        )
