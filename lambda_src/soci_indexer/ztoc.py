"""zTOC model, flatbuffer writer and reader, checkpoint blobs (SOCI-FORMAT.md 1, 2.1, 2.4).

String fields hold the raw bytes of the tar as ``str`` decoded with
UTF-8/``surrogateescape``, so that writing them back yields the exact bytes.

The snapshotter compares zTOCs by digest, so the writer must reproduce the
reference builder's bytes, and a flatbuffer's bytes depend on the order in
which objects are created and on the builder's alignment and vtable-sharing
rules. ``_Builder`` is therefore a line-by-line port of the Go flatbuffers
Builder rather than a generic encoder, and ``serialize`` creates objects in
the reference order (SOCI-FORMAT.md 1.2).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from soci_indexer.errors import ZtocFormatError

ZTOC_VERSION = "0.9"
WINDOW_SIZE = 32 * 1024  # a deflate window: what a checkpoint must carry to restart inflate
TAR_ZINFO_VERSION = 2


class Compression(IntEnum):
    GZIP = 1
    UNCOMPRESSED = 2


class FileMetadata(NamedTuple):
    """One tar entry as the snapshotter's TOC describes it.

    A NamedTuple rather than a frozen dataclass: layers hold tens of thousands
    of entries and a frozen dataclass costs several times more to create.
    """

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


class Checkpoint(NamedTuple):
    """Where inflate can restart: SOCI-FORMAT.md 2.1, one record of the zinfo blob."""

    compressed_offset: int  # first whole byte not yet consumed ("in")
    uncompressed_offset: int  # "out"
    bits: int  # bits of the byte before compressed_offset still to be used
    window: bytes  # the WINDOW_SIZE bytes of output before uncompressed_offset


def span_start(point: Checkpoint) -> int:
    """Compressed offset where the span of ``point`` starts (SOCI-FORMAT.md 2.3).

    A checkpoint with bits left in the byte before it needs that byte too,
    so its span starts one byte early, overlapping the previous span.
    """
    return point.compressed_offset - 1 if point.bits else point.compressed_offset


class TarZinfo(NamedTuple):
    """The checkpoint "blob" of an uncompressed layer: fixed-size spans over the raw tar."""

    span_size: int
    size: int
    version: int = TAR_ZINFO_VERSION


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- writer

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


class _Builder:
    """The Go flatbuffers ``Builder``, reduced to the calls a zTOC needs.

    The buffer grows downward: ``offset()`` is the distance from the end, and
    every object is referred to by the offset it had when it was finished.
    Padding depends on that distance, vtables are shared with the most recent
    identical one, and strings are never shared, all exactly as in Go.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._buf = bytearray(capacity)
        self._head = capacity
        self._minalign = 1
        self._fields: list[int] = []  # per slot: offset() after the field was written, or 0
        self._object_end = 0
        self._vtables: list[int] = []  # offsets of the vtables written so far, oldest first
        self._vtable_by_fields: dict[tuple[int, ...], int] = {}
        self._largest_field_offset = 0

    def offset(self) -> int:
        return len(self._buf) - self._head

    def output(self) -> bytes:
        return bytes(self._buf[self._head :])

    def _reserve(self, size: int) -> None:
        if self._head >= size:
            return
        used = self.offset()
        capacity = max(2 * len(self._buf), used + size + 1024)
        grown = bytearray(capacity)
        grown[capacity - used :] = self._buf[self._head :]
        self._buf = grown
        self._head = capacity - used

    def _prep(self, size: int, additional: int) -> None:
        """Pad so that after writing ``additional`` bytes the next ``size`` bytes are aligned."""
        if size > self._minalign:
            self._minalign = size
        padding = -(self.offset() + additional) & (size - 1)
        self._reserve(padding + size + additional)
        self._head -= padding  # the new space is already zero

    def _place(self, packer: struct.Struct, value: int) -> None:
        self._head -= packer.size
        packer.pack_into(self._buf, self._head, value)

    def _prepend(self, packer: struct.Struct, value: int) -> None:
        self._prep(packer.size, 0)
        self._place(packer, value)

    def prepend_offset(self, target: int) -> None:
        self._prep(4, 0)
        self._place(_U32, self.offset() - target + 4)

    def create_string(self, text: bytes) -> int:
        length = len(text)
        self._prep(4, length + 1)
        self._head -= length + 1  # the string, then its NUL terminator (already zero)
        self._buf[self._head : self._head + length] = text
        return self._end_vector(length)

    def create_byte_vector(self, data: bytes) -> int:
        self._prep(4, len(data))
        self._head -= len(data)
        self._buf[self._head : self._head + len(data)] = data
        return self._end_vector(len(data))

    def create_offset_vector(self, targets: Sequence[int]) -> int:
        """A vector of references, given in the order they are to be read."""
        self._prep(4, 4 * len(targets))
        for target in reversed(targets):
            self.prepend_offset(target)
        return self._end_vector(len(targets))

    def _end_vector(self, length: int) -> int:
        self._place(_U32, length)
        return self.offset()

    def start_object(self, slots: int) -> None:
        self._fields = [0] * slots
        self._object_end = self.offset()

    def add_offset(self, slot: int, target: int) -> None:
        self.prepend_offset(target)
        self._fields[slot] = self.offset()

    def _add_scalar(self, slot: int, packer: struct.Struct, value: int, default: int) -> None:
        if value != default:
            self._prepend(packer, value)
            self._fields[slot] = self.offset()

    def add_int8(self, slot: int, value: int, default: int = 0) -> None:
        self._add_scalar(slot, _U8, value & 0xFF, default & 0xFF)

    def add_int32(self, slot: int, value: int, default: int = 0) -> None:
        self._add_scalar(slot, _I32, value, default)

    def add_uint32(self, slot: int, value: int, default: int = 0) -> None:
        self._add_scalar(slot, _U32, value, default)

    def add_int64(self, slot: int, value: int, default: int = 0) -> None:
        self._add_scalar(slot, _I64, value, default)

    def end_object(self) -> int:
        """Write the object's vtable (or point it at an identical earlier one)."""
        self._prepend(_I32, 0)  # room for the reference to the vtable
        object_offset = self.offset()
        fields = self._fields
        while fields and not fields[-1]:
            fields.pop()
        layout = tuple(object_offset - field if field else 0 for field in fields)
        existing = self._find_vtable(layout, object_offset)
        if existing:
            _I32.pack_into(self._buf, self._head, existing - object_offset)
            return object_offset
        for field_offset in reversed(layout):
            self._prepend(_U16, field_offset)
        self._prepend(_U16, object_offset - self._object_end)
        self._prepend(_U16, 2 * (len(layout) + 2))
        position = len(self._buf) - object_offset
        _I32.pack_into(self._buf, position, self.offset() - object_offset)
        self._vtables.append(self.offset())
        self._vtable_by_fields.setdefault(layout, self.offset())
        self._largest_field_offset = max(self._largest_field_offset, *layout, 0)
        return object_offset

    def _find_vtable(self, layout: tuple[int, ...], object_offset: int) -> int:
        """Go's search: the most recent vtable that ``vtableEqual`` accepts, or 0.

        Go compares an absent field (0 here) with a stored entry as if it were
        present at ``object_offset``; that quirk can only matter while the
        object offset is smaller than some stored field offset. Past that
        point an exact lookup gives the same answer (a layout is stored once,
        and only when no earlier vtable matched it), so it is all we do.
        """
        if object_offset > self._largest_field_offset:
            return self._vtable_by_fields.get(layout, 0)
        for vtable in reversed(self._vtables):
            if self._vtable_equal(vtable, layout, object_offset):
                return vtable
        return 0

    def _vtable_equal(self, vtable: int, layout: tuple[int, ...], object_offset: int) -> bool:
        start = len(self._buf) - vtable
        (size,) = _U16.unpack_from(self._buf, start)
        if size - 4 != 2 * len(layout):
            return False
        for index, field_offset in enumerate(layout):
            (stored,) = _U16.unpack_from(self._buf, start + 4 + 2 * index)
            if field_offset == 0 and stored == 0:
                continue
            if stored != (field_offset or object_offset):
                return False
        return True

    def finish(self, root: int) -> bytes:
        self._prep(self._minalign, 4)
        self.prepend_offset(root)
        return self.output()


def serialize(ztoc: Ztoc) -> bytes:
    """The zTOC's flatbuffer bytes, byte-identical to the reference builder's."""
    builder = _Builder(_size_hint(ztoc))
    version = builder.create_string(_encode(ztoc.version))
    build_tool = builder.create_string(_encode(ztoc.build_tool_identifier))
    toc = _write_toc(builder, ztoc.metadata)
    compression = _write_compression_info(builder, ztoc.compression)
    builder.start_object(6)
    builder.add_offset(0, version)
    builder.add_offset(1, build_tool)
    builder.add_offset(4, toc)
    builder.add_int64(2, ztoc.compressed_archive_size)
    builder.add_int64(3, ztoc.uncompressed_archive_size)
    builder.add_offset(5, compression)
    return builder.finish(builder.end_object())


def _size_hint(ztoc: Ztoc) -> int:
    """Roughly the serialized size, so the buffer rarely has to grow."""
    info = ztoc.compression
    return 1024 + len(info.checkpoints) + 80 * len(info.span_digests) + 200 * len(ztoc.metadata)


def _write_toc(builder: _Builder, metadata: Sequence[FileMetadata]) -> int:
    """The TOC, entries created last first so that they read in archive order."""
    entries = [0] * len(metadata)
    for index in range(len(metadata) - 1, -1, -1):
        entries[index] = _write_entry(builder, metadata[index])
    vector = builder.create_offset_vector(entries)
    builder.start_object(1)
    builder.add_offset(0, vector)
    return builder.end_object()


def _write_entry(builder: _Builder, entry: FileMetadata) -> int:
    string = builder.create_string
    name = string(_encode(entry.name))
    kind = string(_encode(entry.type))
    linkname = string(_encode(entry.linkname))
    uname = string(_encode(entry.uname))
    gname = string(_encode(entry.gname))
    mod_time = string(_encode(entry.mod_time))
    xattrs = builder.create_offset_vector([_write_xattr(builder, *xattr) for xattr in entry.xattrs])
    builder.start_object(14)
    builder.add_offset(0, name)
    builder.add_offset(1, kind)
    builder.add_int64(2, entry.uncompressed_offset)
    builder.add_int64(3, entry.uncompressed_size)
    builder.add_offset(4, linkname)
    builder.add_int64(5, entry.mode)
    builder.add_uint32(6, entry.uid & 0xFFFFFFFF)
    builder.add_uint32(7, entry.gid & 0xFFFFFFFF)
    builder.add_offset(8, uname)
    builder.add_offset(9, gname)
    builder.add_offset(10, mod_time)
    builder.add_int64(11, entry.devmajor)
    builder.add_int64(12, entry.devminor)
    builder.add_offset(13, xattrs)
    return builder.end_object()


def _write_xattr(builder: _Builder, key: str, value: str) -> int:
    key_offset = builder.create_string(_encode(key))
    value_offset = builder.create_string(_encode(value))
    builder.start_object(2)
    builder.add_offset(0, key_offset)
    builder.add_offset(1, value_offset)
    return builder.end_object()


def _write_compression_info(builder: _Builder, info: CompressionInfo) -> int:
    checkpoints = builder.create_byte_vector(info.checkpoints)
    digests = [builder.create_string(_encode(digest)) for digest in info.span_digests]
    digest_vector = builder.create_offset_vector(digests)
    builder.start_object(4)
    builder.add_int32(1, info.max_span_id)
    builder.add_offset(2, digest_vector)
    builder.add_offset(3, checkpoints)
    builder.add_int8(0, info.algorithm, default=Compression.GZIP)
    return builder.end_object()


def serialize_tar_zinfo(zinfo: TarZinfo) -> bytes:
    """The ``checkpoints`` bytes of an uncompressed layer (SOCI-FORMAT.md 2.4)."""
    builder = _Builder(64)
    builder.start_object(3)
    builder.add_int32(0, zinfo.version)
    builder.add_int64(1, zinfo.span_size)
    builder.add_int64(2, zinfo.size)
    return builder.finish(builder.end_object())


_ZINFO_HEADER = struct.Struct("<iq")
_CHECKPOINT_HEADER = struct.Struct("<qqB")
_CHECKPOINT_SIZE = _CHECKPOINT_HEADER.size + WINDOW_SIZE


def serialize_gzip_zinfo(span_size: int, checkpoints: Sequence[Checkpoint]) -> bytes:
    """The ``checkpoints`` bytes of a gzip layer (SOCI-FORMAT.md 2.1)."""
    parts = [_ZINFO_HEADER.pack(len(checkpoints), span_size)]
    for point in checkpoints:
        parts.append(
            _CHECKPOINT_HEADER.pack(point.compressed_offset, point.uncompressed_offset, point.bits)
        )
        parts.append(point.window)
    return b"".join(parts)


# --------------------------------------------------------------------------- reader


def parse(data: bytes) -> Ztoc:
    """Decode zTOC bytes; raises ZtocFormatError on anything malformed."""
    reader = _Reader(data)
    root = reader.table(reader.offset_at(0))
    toc = reader.table_field(root, 4, "toc")
    info = reader.table_field(root, 5, "compression_info")
    algorithm = _compression(reader.scalar(info, 0, _U8, Compression.GZIP))
    return Ztoc(
        version=_decode(reader.string(root, 0)),
        build_tool_identifier=_decode(reader.string(root, 1)),
        compressed_archive_size=reader.scalar(root, 2, _I64),
        uncompressed_archive_size=reader.scalar(root, 3, _I64),
        metadata=tuple(_read_entry(reader, entry) for entry in reader.tables(toc, 0)),
        compression=CompressionInfo(
            algorithm=algorithm,
            max_span_id=reader.scalar(info, 1, _I32),
            span_digests=tuple(_decode(text) for text in reader.strings(info, 2)),
            checkpoints=reader.bytes_vector(info, 3),
        ),
    )


def _compression(value: int) -> Compression:
    try:
        return Compression(value)
    except ValueError:
        raise ZtocFormatError(f"unknown compression algorithm {value}") from None


def _read_entry(reader: _Reader, table: _Table) -> FileMetadata:
    string = reader.string
    return FileMetadata(
        name=_decode(string(table, 0)),
        type=_decode(string(table, 1)),
        uncompressed_offset=reader.scalar(table, 2, _I64),
        uncompressed_size=reader.scalar(table, 3, _I64),
        linkname=_decode(string(table, 4)),
        mode=reader.scalar(table, 5, _I64),
        uid=reader.scalar(table, 6, _U32),
        gid=reader.scalar(table, 7, _U32),
        uname=_decode(string(table, 8)),
        gname=_decode(string(table, 9)),
        mod_time=_decode(string(table, 10)),
        devmajor=reader.scalar(table, 11, _I64),
        devminor=reader.scalar(table, 12, _I64),
        xattrs=tuple(
            (_decode(string(xattr, 0)), _decode(string(xattr, 1)))
            for xattr in reader.tables(table, 13)
        ),
    )


class _Table(NamedTuple):
    position: int  # of the table in the buffer
    fields: tuple[int, ...]  # per slot: position of the field, or 0 when absent


class _Reader:
    """Bounds-checked flatbuffer access: every malformed input ends in ZtocFormatError."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def _unpack(self, packer: struct.Struct, position: int) -> int:
        if position < 0 or position + packer.size > len(self._data):
            raise ZtocFormatError(f"zTOC reference out of bounds at byte {position}")
        value: int = packer.unpack_from(self._data, position)[0]
        return value

    def offset_at(self, position: int) -> int:
        return position + self._unpack(_U32, position)

    def table(self, position: int) -> _Table:
        vtable = position - self._unpack(_I32, position)
        vtable_size = self._unpack(_U16, vtable)
        if vtable_size < 4 or vtable_size % 2:
            raise ZtocFormatError(f"malformed vtable at byte {vtable}")
        table_size = self._unpack(_U16, vtable + 2)
        if position + table_size > len(self._data):
            raise ZtocFormatError(f"table at byte {position} runs past the end of the zTOC")
        fields = []
        for slot_position in range(vtable + 4, vtable + vtable_size, 2):
            field = self._unpack(_U16, slot_position)
            if field and field >= table_size:
                raise ZtocFormatError(f"field outside its table at byte {position}")
            fields.append(position + field if field else 0)
        return _Table(position, tuple(fields))

    @staticmethod
    def _field(table: _Table, slot: int) -> int:
        return table.fields[slot] if slot < len(table.fields) else 0

    def scalar(self, table: _Table, slot: int, packer: struct.Struct, default: int = 0) -> int:
        field = self._field(table, slot)
        return self._unpack(packer, field) if field else default

    def table_field(self, table: _Table, slot: int, name: str) -> _Table:
        field = self._field(table, slot)
        if not field:
            raise ZtocFormatError(f"zTOC has no {name}")
        return self.table(self.offset_at(field))

    def _vector(self, table: _Table, slot: int, element_size: int) -> tuple[int, int]:
        """(position of the first element, element count); (0, 0) when absent."""
        field = self._field(table, slot)
        if not field:
            return 0, 0
        start = self.offset_at(field)
        count = self._unpack(_U32, start)
        if start + 4 + count * element_size > len(self._data):
            raise ZtocFormatError(f"vector at byte {start} runs past the end of the zTOC")
        return start + 4, count

    def bytes_vector(self, table: _Table, slot: int) -> bytes:
        start, count = self._vector(table, slot, 1)
        return bytes(self._data[start : start + count])

    def string(self, table: _Table, slot: int) -> bytes:
        return self.bytes_vector(table, slot)

    def tables(self, table: _Table, slot: int) -> list[_Table]:
        start, count = self._vector(table, slot, 4)
        return [self.table(self.offset_at(start + 4 * index)) for index in range(count)]

    def strings(self, table: _Table, slot: int) -> list[bytes]:
        start, count = self._vector(table, slot, 4)
        out = []
        for index in range(count):
            position = self.offset_at(start + 4 * index)
            length = self._unpack(_U32, position)
            if position + 4 + length > len(self._data):
                raise ZtocFormatError(f"string at byte {position} runs past the end of the zTOC")
            out.append(bytes(self._data[position + 4 : position + 4 + length]))
        return out


def parse_gzip_zinfo(blob: bytes) -> tuple[int, list[Checkpoint]]:
    """(span size, checkpoints) of a gzip layer's ``checkpoints`` bytes."""
    if len(blob) < _ZINFO_HEADER.size:
        raise ZtocFormatError(f"checkpoint blob of {len(blob)} bytes is too short")
    count, span_size = _ZINFO_HEADER.unpack_from(blob)
    if count < 1 or len(blob) != _ZINFO_HEADER.size + count * _CHECKPOINT_SIZE:
        raise ZtocFormatError(
            f"checkpoint blob of {len(blob)} bytes does not hold {count} checkpoints"
            " (legacy blobs without checkpoint 0 are not supported)"
        )
    checkpoints = []
    for index in range(count):
        start = _ZINFO_HEADER.size + index * _CHECKPOINT_SIZE
        compressed, uncompressed, bits = _CHECKPOINT_HEADER.unpack_from(blob, start)
        window = blob[start + _CHECKPOINT_HEADER.size : start + _CHECKPOINT_SIZE]
        checkpoints.append(Checkpoint(compressed, uncompressed, bits, window))
    return span_size, checkpoints


def parse_tar_zinfo(blob: bytes) -> TarZinfo:
    """The span size and layer size of an uncompressed layer's ``checkpoints`` bytes."""
    reader = _Reader(blob)
    table = reader.table(reader.offset_at(0))
    return TarZinfo(
        version=reader.scalar(table, 0, _I32),
        span_size=reader.scalar(table, 1, _I64),
        size=reader.scalar(table, 2, _I64),
    )
