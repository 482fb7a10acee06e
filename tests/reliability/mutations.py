"""Fuzz targets and mutators shared by the quick fuzz pass (pytest) and `make fuzz`.

A target takes arbitrary bytes and must end in one of two ways: a result, or
a typed error of the package (LayerError for layers, ZtocFormatError for
zTOC bytes). Any other exception is a bug, and so is a hang or a blow-up in
memory, which the long run bounds with libFuzzer's -timeout and -rss_limit_mb.
"""

from __future__ import annotations

import gzip
import io
import random
import zlib
from collections.abc import Callable
from pathlib import Path

from soci_indexer.engine.build import build_ztoc
from soci_indexer.engine.readback import read_entry, spans
from soci_indexer.engine.ztoc import parse, serialize
from soci_indexer.errors import LayerError, ZtocFormatError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SPAN = 32 * 1024  # small spans: more checkpoints per byte of input


def seed_layers() -> dict[str, bytes]:
    """The real layers the fuzzers start from (the reference vectors)."""
    return {path.name: path.read_bytes() for path in sorted((GOLDEN / "layers").iterdir())}


def seed_ztocs() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((GOLDEN / "ztocs").iterdir())}


def index_gzip_layer(data: bytes) -> None:
    """Index bytes as a gzip layer, then read every file back through the zTOC."""
    try:
        build = build_ztoc(io.BytesIO(data), span_size=SPAN, compression="gzip")
    except LayerError:
        return
    _read_back(build.data, data)


def index_tar_layer(data: bytes) -> None:
    """Index bytes as an uncompressed tar layer."""
    try:
        build = build_ztoc(io.BytesIO(data), span_size=SPAN, compression="uncompressed")
    except LayerError:
        return
    _read_back(build.data, data)


def index_tar_in_gzip(data: bytes) -> None:
    """Tar bytes (mutated headers, PAX records, long names) behind a valid gzip stream."""
    index_gzip_layer(gzip.compress(data, compresslevel=1, mtime=0))


def decode_ztoc(data: bytes) -> None:
    """Decode arbitrary zTOC bytes; a zTOC that decodes must re-encode to the same bytes."""
    try:
        ztoc = parse(data)
    except ZtocFormatError:
        return
    try:
        spans(ztoc)
    except ZtocFormatError:
        return
    serialize(ztoc)


def _read_back(ztoc_bytes: bytes, layer: bytes) -> None:
    """A zTOC we built must decode, and its files must read back from the layer."""
    ztoc = parse(ztoc_bytes)
    assert serialize(ztoc) == ztoc_bytes, "zTOC does not round-trip"

    def fetch(start: int, end: int) -> bytes:
        return layer[start:end]

    for entry in ztoc.metadata:
        if entry.type == "reg" and entry.uncompressed_size:
            content = read_entry(ztoc, entry, fetch)
            assert len(content) == entry.uncompressed_size


TARGETS: dict[str, Callable[[bytes], None]] = {
    "gzip-layer": index_gzip_layer,
    "tar-layer": index_tar_layer,
    "tar-in-gzip": index_tar_in_gzip,
    "ztoc": decode_ztoc,
}


def seeds_for(target: str) -> list[bytes]:
    layers = seed_layers()
    if target == "gzip-layer":
        return [data for name, data in layers.items() if name.endswith(".gz")]
    if target in ("tar-layer", "tar-in-gzip"):
        return [data for name, data in layers.items() if name.endswith(".tar")]
    return list(seed_ztocs().values())


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One structure-blind mutation of the kind that breaks parsers."""
    buf = bytearray(data)
    choice = rng.randrange(7)
    if not buf:
        return bytes(rng.randbytes(rng.randrange(1, 64)))
    position = rng.randrange(len(buf))
    if choice == 0:  # flip a bit
        buf[position] ^= 1 << rng.randrange(8)
    elif choice == 1:  # set an interesting byte
        buf[position] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x30, 0x37, 0x20, 0x0A))
    elif choice == 2:  # truncate
        del buf[position:]
    elif choice == 3:  # append garbage or zeros
        buf += rng.choice((bytes(rng.randrange(1, 2048)), rng.randbytes(rng.randrange(1, 64))))
    elif choice == 4:  # overwrite a run with random bytes
        length = rng.randrange(1, 32)
        buf[position : position + length] = rng.randbytes(length)
    elif choice == 5:  # duplicate a slice (splices headers into data and back)
        length = rng.randrange(1, 1024)
        buf[position:position] = buf[position : position + length]
    else:  # write an ASCII number, as tar headers and PAX records hold them
        text = str(rng.choice((0, 1, 511, 512, 2**31, 2**63, -1, 10**20))).encode()
        buf[position : position + len(text)] = text
    return bytes(buf)


def deflate_raw_variants(data: bytes) -> list[bytes]:
    """The same tar under other deflate encoders: stored, fastest, full-flush blocks."""
    out = []
    for level in (0, 1, 9):
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        out.append(compressor.compress(data) + compressor.flush())
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    pieces = [
        compressor.compress(data[i : i + 4096]) + compressor.flush(zlib.Z_FULL_FLUSH)
        for i in range(0, len(data), 4096)
    ]
    out.append(b"".join(pieces) + compressor.flush())
    return out
