"""Checkpoints where the reference loop puts them, whatever the input chunking."""

from __future__ import annotations

import ctypes
import hashlib
import io
import zlib

import pytest
from layerkit import (
    full_flush_layer,
    gzip_layer,
    gzip_members,
    pigz_layer,
    read_every_file,
    sample_files,
    tarfile_layer,
    tarfile_regular_files,
)
from soci_indexer.engine.build import build_ztoc
from soci_indexer.engine.inflate import (
    GZIP_OR_ZLIB,
    Z_BLOCK,
    Z_STREAM_END,
    GzipCheckpointer,
    Inflater,
)
from soci_indexer.engine.readback import spans
from soci_indexer.engine.ztoc import WINDOW_SIZE, Checkpoint, parse_gzip_zinfo
from soci_indexer.errors import UnsupportedLayer

TAR = tarfile_layer(sample_files(seed=11))
LAYERS = {
    "gzip-level-1": gzip_layer(TAR, 1),
    "gzip-level-9": gzip_layer(TAR, 9),
    "pigz-independent": pigz_layer(TAR, "-i", "-b", "32"),
    "members": gzip_members(TAR, [10_000, 200_000]),
    "full-flush": full_flush_layer(TAR, 20_000),
}


def zran_checkpoints(blob: bytes, span: int) -> list[Checkpoint]:
    """The reference loop, transcribed: inflate(Z_BLOCK) on every call, 32 KiB output at a time."""
    points: list[Checkpoint] = []
    output = bytearray()
    consumed = 0
    last = 0
    with Inflater(GZIP_OR_ZLIB) as inflater:
        stream = inflater.stream
        while True:
            window = bytearray(WINDOW_SIZE)
            source = blob[consumed:]
            stream.next_in = zlib_address(source)
            stream.avail_in = len(source)
            stream.next_out = zlib_address(window)
            stream.avail_out = WINDOW_SIZE
            status = inflater.inflate(Z_BLOCK)
            consumed += len(source) - stream.avail_in
            output += window[: WINDOW_SIZE - stream.avail_out]
            if status == Z_STREAM_END:
                if consumed == len(blob):
                    return points
                inflater.reset(GZIP_OR_ZLIB)
                continue
            assert status == 0
            out = len(output)
            at_boundary = stream.data_type & 128 and not stream.data_type & 64
            if at_boundary and (out == 0 or out - last > span):
                recent = bytes(WINDOW_SIZE) + bytes(output[-WINDOW_SIZE:])
                points.append(
                    Checkpoint(consumed, out, stream.data_type & 7, recent[-WINDOW_SIZE:])
                )
                last = out


def zlib_address(buffer: bytes | bytearray) -> int:
    if isinstance(buffer, bytearray):
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0


def checkpointer_points(blob: bytes, span: int, piece: int) -> list[Checkpoint]:
    def consume(view: memoryview, offset: int) -> None:
        checkpointer.release_output()

    checkpointer = GzipCheckpointer(span, consume, output_buffer=64 * 1024)
    for start in range(0, len(blob), piece):
        checkpointer.feed(blob[start : start + piece])
    checkpointer.finish()
    return checkpointer.checkpoints


@pytest.mark.parametrize("span", [32 * 1024, 100_000, 1024 * 1024])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_checkpoints_are_those_of_the_reference_loop(name: str, span: int) -> None:
    blob = LAYERS[name]
    assert checkpointer_points(blob, span, 256 * 1024) == zran_checkpoints(blob, span)


@pytest.mark.parametrize("piece", [1, 333, 4096])
def test_checkpoints_do_not_depend_on_how_the_input_is_cut(piece: int) -> None:
    blob = gzip_members(TAR[:150_000], [50_000])
    assert checkpointer_points(blob, 32 * 1024, piece) == checkpointer_points(
        blob, 32 * 1024, len(blob)
    )


def go_style_gzip(data: bytes, flush_every: int) -> bytes:
    """Blocks that end every ``flush_every`` bytes and at the very end, then an empty final block.

    Go's gzip writer closes this way: the last data block is not marked
    final, so a block boundary sits exactly at the end of the data.
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    pieces = [
        compressor.compress(data[start : start + flush_every]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        for start in range(0, len(data), flush_every)
    ]
    return b"".join(pieces) + compressor.flush()


def test_a_checkpoint_at_the_end_of_the_data_is_folded_into_the_span_before() -> None:
    span = 32 * 1024
    flush_every = len(TAR) // 3 + 1  # boundaries at 1/3, 2/3 and the end: each > span apart
    blob = go_style_gzip(TAR, flush_every)
    reference = zran_checkpoints(blob, span)
    assert reference[-1].uncompressed_offset == len(TAR)  # where the last span would be empty

    ztoc = build_ztoc(io.BytesIO(blob), span_size=span).ztoc
    _, kept = parse_gzip_zinfo(ztoc.compression.checkpoints)
    assert kept == reference[:-1]
    last = spans(ztoc)[-1]
    assert (last.compressed_end, last.uncompressed_end) == (
        len(blob),
        ztoc.uncompressed_archive_size,
    )
    assert last.digest == "sha256:" + hashlib.sha256(blob[last.compressed_start :]).hexdigest()
    expected = {name: view.content for name, view in tarfile_regular_files(TAR).items()}
    assert read_every_file(ztoc, blob) == expected


def test_more_than_a_span_of_data_after_the_archive_end_is_unsupported() -> None:
    span = 32 * 1024
    blob = gzip_layer(TAR) + gzip_members(bytes(4 * span), [span + 1, 2 * span + 2, 3 * span + 3])
    with pytest.raises(UnsupportedLayer, match="follows the end of the tar archive"):
        build_ztoc(io.BytesIO(blob), span_size=span)
