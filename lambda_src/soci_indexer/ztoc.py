"""zTOC model, flatbuffer writer and reader (SOCI-FORMAT.md sections 1 and 2.3).

String fields hold the raw bytes of the tar as ``str`` decoded with
UTF-8/``surrogateescape``, so that writing them back yields the exact bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

ZTOC_VERSION = "0.9"


class Compression(IntEnum):
    GZIP = 1
    UNCOMPRESSED = 2


@dataclass(frozen=True, slots=True)
class FileMetadata:
    name: str
    type: str  # "reg", "hardlink", "symlink", "char", "block", "dir", "fifo"
    uncompressed_offset: int
    uncompressed_size: int
    linkname: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mod_time: str = "0001-01-01T00:00:00Z"
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()  # every PAX record, sorted by key bytes


@dataclass(frozen=True, slots=True)
class CompressionInfo:
    algorithm: Compression
    max_span_id: int
    span_digests: tuple[str, ...]
    checkpoints: bytes  # gzip: the zinfo blob (2.1); uncompressed: a TarZinfo flatbuffer (2.4)


@dataclass(frozen=True, slots=True)
class Ztoc:
    build_tool_identifier: str
    compressed_archive_size: int
    uncompressed_archive_size: int
    metadata: tuple[FileMetadata, ...]
    compression: CompressionInfo
    version: str = ZTOC_VERSION


def serialize(ztoc: Ztoc) -> bytes:
    """The zTOC's flatbuffer bytes, byte-identical to the reference builder's."""
    raise NotImplementedError


def parse(data: bytes) -> Ztoc:
    """Decode zTOC bytes; raises ZtocFormatError on anything malformed."""
    raise NotImplementedError
