"""libz through ctypes: one inflate pass that takes checkpoints, and restarts from them.

Python's ``zlib`` module hides what SOCI needs: stopping at deflate block
boundaries (``Z_BLOCK``), the ``data_type`` bits that say where it stopped,
``inflatePrime`` and raw inflate with a preset window. The system libz (the
one Python itself is linked against) exposes all of it; ctypes releases the
GIL during each call, so inflating runs beside the Python threads that parse
tar headers and hash spans.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import zlib  # noqa: F401 - loading the zlib module maps the system libz into the process
from collections.abc import Callable
from functools import cache
from pathlib import Path

from soci_indexer.engine.ztoc import WINDOW_SIZE, Checkpoint
from soci_indexer.errors import CorruptLayer, SociError

Z_OK, Z_STREAM_END, Z_BUF_ERROR = 0, 1, -5
Z_NO_FLUSH, Z_BLOCK = 0, 5
GZIP_OR_ZLIB = 32 + 15  # windowBits: detect the header, 32 KiB window
GZIP_ONLY = 16 + 15
RAW_DEFLATE = -15
GZIP_TRAILER = 8  # CRC-32 and length after a member's deflate data

_AT_BLOCK_BOUNDARY = 128  # data_type bits after inflate(Z_BLOCK)
_IN_LAST_BLOCK = 64
_BITS_MASK = 7
_HEADER_ERRORS = frozenset(
    {
        "incorrect header check",
        "unknown compression method",
        "invalid window size",
        "unknown header flags set",
        "header crc mismatch",
    }
)

DEFAULT_OUTPUT_BUFFER = 4 * 1024 * 1024  # fewer, longer inflate calls: fewer GIL hand-offs


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


@cache
def _libz() -> ctypes.CDLL:
    """The system libz: the file the ``zlib`` module has loaded, else found by name.

    ``ctypes.util`` is imported only for the second: it imports subprocess,
    tempfile and more, a cost every indexing process would pay at start-up.
    """
    for candidate in _mapped_libz():
        with contextlib.suppress(OSError):
            return _declare(ctypes.CDLL(candidate))
    from ctypes.util import find_library  # here, not at the top: see the docstring

    name = find_library("z")
    if name:
        with contextlib.suppress(OSError):
            return _declare(ctypes.CDLL(name))
    raise SociError("cannot load the system zlib (libz.so) through ctypes")


def _mapped_libz() -> list[str]:
    """Paths of libz mapped into this process (minimal images lack ldconfig's cache)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in maps.splitlines() if "/libz." in line})


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    stream = ctypes.POINTER(_ZStream)
    lib.zlibVersion.restype = ctypes.c_char_p
    lib.zlibVersion.argtypes = []
    signatures: dict[str, list[type]] = {
        "inflateInit2_": [stream, ctypes.c_int, ctypes.c_char_p, ctypes.c_int],
        "inflate": [stream, ctypes.c_int],
        "inflateEnd": [stream],
        "inflateReset2": [stream, ctypes.c_int],
        "inflatePrime": [stream, ctypes.c_int, ctypes.c_int],
        "inflateSetDictionary": [stream, ctypes.c_void_p, ctypes.c_uint],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return lib


def _address(data: bytes | bytearray) -> int:
    """Where ``data``'s bytes live; valid while ``data`` is referenced (and not resized)."""
    if isinstance(data, bytearray):
        return ctypes.addressof(ctypes.c_char.from_buffer(data)) if data else 0
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    return address or 0


class Inflater:
    """One zlib inflate stream. Close it (or use ``with``) to free zlib's state."""

    def __init__(self, window_bits: int) -> None:
        self._lib = _libz()
        self.stream = _ZStream()
        self._ref = ctypes.byref(self.stream)
        version = self._lib.zlibVersion()
        status = self._lib.inflateInit2_(self._ref, window_bits, version, ctypes.sizeof(_ZStream))
        if status != Z_OK:
            raise SociError(f"zlib inflateInit2 failed with status {status}")
        self._open = True

    def __enter__(self) -> Inflater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._lib.inflateEnd(self._ref)
            self._open = False

    def inflate(self, flush: int) -> int:
        status: int = self._lib.inflate(self._ref, flush)
        return status

    def reset(self, window_bits: int) -> None:
        self._lib.inflateReset2(self._ref, window_bits)

    def prime(self, bits: int, value: int) -> None:
        self._lib.inflatePrime(self._ref, bits, value)

    def set_dictionary(self, window: bytes) -> None:
        self._lib.inflateSetDictionary(self._ref, _address(window), len(window))

    def error(self) -> str:
        message = self.stream.msg
        return message.decode("ascii", "replace") if message else "invalid deflate data"


OutputHandler = Callable[[memoryview, int], None]


class GzipCheckpointer:
    """Inflate a gzip layer once, taking the reference builder's checkpoints.

    Feed the compressed stream in pieces (``feed``), then call ``finish``.
    The rule (SOCI-FORMAT.md 2.2): after each ``inflate(Z_BLOCK)`` that stops
    at a block boundary other than the last block's, take a checkpoint when
    nothing was output yet or more than ``span_size`` bytes were output since
    the previous one. Stopping at every block costs a round trip through
    Python per block, so between checkpoints the stream is inflated without
    stopping, with the output capped so that no qualifying boundary can be
    passed; ``Z_BLOCK`` is used only from there to the next checkpoint. The
    checkpoints are the same, since they depend only on the deflate bits.

    Output goes to ``on_output(view, offset)`` in buffers of
    ``output_buffer`` bytes. A view stays valid until the consumer calls
    ``release_output`` for it (views are released in the order given);
    ``buffers`` bounds how many are out at once. Each buffer starts with a
    copy of the 32 KiB of output before it, so a checkpoint's window is a
    plain slice.
    """

    def __init__(
        self,
        span_size: int,
        on_output: OutputHandler,
        *,
        output_buffer: int = DEFAULT_OUTPUT_BUFFER,
        buffers: int = 3,
    ) -> None:
        if buffers < 2 or output_buffer < WINDOW_SIZE:
            raise ValueError("need two output buffers of at least one window each")
        self.span_size = span_size
        self.checkpoints: list[Checkpoint] = []
        self.compressed_size = 0  # bytes consumed so far ("totin")
        self.uncompressed_size = 0  # bytes output so far ("totout")
        self._on_output = on_output
        self._inflater = Inflater(GZIP_OR_ZLIB)
        self._members = 1
        self._member_start = 0
        self._member_ended = False
        self._capacity = output_buffer
        self._buffers: list[bytearray] = []  # allocated as the rotation first reaches them
        self._views: list[memoryview] = []
        self._addresses: list[int] = []
        self._rotation = buffers
        self._allocate()
        self._free = threading.Semaphore(buffers - 1)  # the first buffer is in use
        self._current = 0
        self._filled = 0  # output bytes in the current buffer, after its window copy
        self._input: bytes = b""

    def _allocate(self) -> None:
        buffer = bytearray(WINDOW_SIZE + self._capacity)
        self._buffers.append(buffer)
        self._views.append(memoryview(buffer))
        self._addresses.append(_address(buffer))

    def release_output(self) -> None:
        """The consumer is done with the oldest view it was given."""
        self._free.release()

    def feed(self, chunk: bytes) -> None:
        """Inflate the next piece of the compressed stream."""
        stream = self._inflater.stream
        self._input = chunk  # keeps the bytes alive while zlib points into them
        stream.next_in = _address(chunk)
        stream.avail_in = len(chunk)
        while True:
            if self._member_ended:
                if not stream.avail_in:
                    return
                self._start_member()
            if self._filled == self._capacity:
                self._next_buffer()
            if not self._inflate_step(stream):
                return

    def _inflate_step(self, stream: _ZStream) -> bool:
        """One inflate call; False when it needs more input."""
        space = self._capacity - self._filled
        headroom = self._last_out() + self.span_size - self.uncompressed_size
        stop_at_blocks = not self.checkpoints or headroom <= 0
        if not stop_at_blocks:
            space = min(space, headroom)
        stream.next_out = self._addresses[self._current] + WINDOW_SIZE + self._filled
        stream.avail_out = space
        available = stream.avail_in
        status = self._inflater.inflate(Z_BLOCK if stop_at_blocks else Z_NO_FLUSH)
        produced = space - stream.avail_out
        self.compressed_size += available - stream.avail_in
        self.uncompressed_size += produced
        self._filled += produced
        if status == Z_STREAM_END:
            self._member_ended = True
            return True
        if status == Z_BUF_ERROR:  # no progress possible: the input is used up
            return False
        if status != Z_OK:
            raise self._corrupt()
        if stop_at_blocks:
            self._maybe_checkpoint(stream.data_type)
        return bool(stream.avail_in) or not stream.avail_out

    def _last_out(self) -> int:
        return self.checkpoints[-1].uncompressed_offset if self.checkpoints else 0

    def _maybe_checkpoint(self, data_type: int) -> None:
        if not data_type & _AT_BLOCK_BOUNDARY or data_type & _IN_LAST_BLOCK:
            return
        out = self.uncompressed_size
        if out and out - self._last_out() <= self.span_size:
            return
        window = bytes(self._buffers[self._current][self._filled : self._filled + WINDOW_SIZE])
        self.checkpoints.append(
            Checkpoint(self.compressed_size, out, data_type & _BITS_MASK, window)
        )

    def _start_member(self) -> None:
        """Concatenated gzip members (pigz, appended layers) form one stream."""
        self._inflater.reset(GZIP_OR_ZLIB)
        self._member_ended = False
        self._members += 1
        self._member_start = self.compressed_size

    def _next_buffer(self) -> None:
        """Hand the full buffer to the consumer and continue in the next free one."""
        self._emit()
        self._free.acquire()
        previous = self._buffers[self._current]
        self._current = (self._current + 1) % self._rotation
        if self._current == len(self._buffers):
            self._allocate()
        self._buffers[self._current][:WINDOW_SIZE] = previous[-WINDOW_SIZE:]
        self._filled = 0

    def _emit(self) -> None:
        view = self._views[self._current][WINDOW_SIZE : WINDOW_SIZE + self._filled]
        self._on_output(view, self.uncompressed_size - self._filled)

    def _corrupt(self) -> CorruptLayer:
        message = self._inflater.error()
        if self._members > 1 and message in _HEADER_ERRORS:
            return CorruptLayer(
                f"bytes after the end of the gzip stream are not a gzip member ({message})",
                self._member_start,
                stream="gzip",
            )
        return CorruptLayer(f"corrupt gzip stream ({message})", self.compressed_size, "gzip")

    def finish(self) -> None:
        """The compressed stream ended: check it was complete and pass on the last output."""
        try:
            if not self._member_ended:
                raise CorruptLayer("truncated gzip stream", self.compressed_size, stream="gzip")
            if self._filled:
                self._emit()
        finally:
            self.close()

    def close(self) -> None:
        self._inflater.close()
        self._input = b""


def inflate_span(compressed: bytes, checkpoint: Checkpoint, size: int) -> bytes:
    """``size`` bytes of output from a checkpoint, given the layer bytes from there on.

    ``compressed`` starts at the checkpoint's compressed offset, or one byte
    earlier when the checkpoint has bits left in that byte. Gzip members
    that end inside the range are followed into the next member.
    """
    output = bytearray(size)
    with Inflater(RAW_DEFLATE) as inflater:
        stream = inflater.stream
        start = 0
        if checkpoint.bits:
            inflater.prime(checkpoint.bits, compressed[0] >> (8 - checkpoint.bits))
            start = 1
        inflater.set_dictionary(checkpoint.window)
        stream.next_in = _address(compressed) + start
        stream.avail_in = len(compressed) - start
        stream.next_out = _address(output)
        stream.avail_out = size
        raw = True
        while stream.avail_out:
            status = inflater.inflate(Z_NO_FLUSH)
            if status == Z_STREAM_END and stream.avail_out:
                if raw:  # the raw stream stops before the member's trailer
                    if stream.avail_in < GZIP_TRAILER:
                        break
                    stream.next_in += GZIP_TRAILER
                    stream.avail_in -= GZIP_TRAILER
                    raw = False
                inflater.reset(GZIP_OR_ZLIB)
            elif status == Z_BUF_ERROR:
                break
            elif status not in (Z_OK, Z_STREAM_END):
                raise CorruptLayer(f"corrupt gzip span ({inflater.error()})", stream="gzip")
        if stream.avail_out:
            raise CorruptLayer(
                f"gzip span ended {stream.avail_out} bytes short of its content", stream="gzip"
            )
    return bytes(output)


def gzip_header_length(header: bytes) -> int | None:
    """The length of the gzip header ``header`` starts with, or None if it does not parse."""
    with Inflater(GZIP_ONLY) as inflater:
        stream = inflater.stream
        stream.next_in = _address(header)
        stream.avail_in = len(header)
        sink = bytearray(1)
        stream.next_out = _address(sink)
        stream.avail_out = 1
        status = inflater.inflate(Z_BLOCK)
        if status != Z_OK or not stream.data_type & _AT_BLOCK_BOUNDARY or stream.total_out:
            return None
        return len(header) - int(stream.avail_in)
