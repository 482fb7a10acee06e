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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from itertools import accumulate
from operator import itemgetter, sub
from typing import NamedTuple, cast

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

# Table fields by struct code; "O" marks a reference to another object, stored as a uint32.
_OFFSET = "O"
_FIELD_SIZES = {"b": 1, "i": 4, "I": 4, "q": 8, _OFFSET: 4}


class _Schema(NamedTuple):
    """A table type: its slot count, and its fields (slot, struct code) in the order the
    reference builder adds them, which decides where they land (SOCI-FORMAT.md 1.2)."""

    name: str
    slots: int
    fields: tuple[tuple[int, str], ...]


_ZTOC = _Schema(
    "Ztoc",
    6,
    (
        (0, _OFFSET),  # version
        (1, _OFFSET),  # build_tool_identifier
        (4, _OFFSET),  # toc
        (2, "q"),  # compressed_archive_size
        (3, "q"),  # uncompressed_archive_size
        (5, _OFFSET),  # compression_info
    ),
)
_TOC = _Schema("TOC", 1, ((0, _OFFSET),))
_FILE_METADATA = _Schema(
    "FileMetadata",
    14,
    (
        (0, _OFFSET),  # name
        (1, _OFFSET),  # type
        (2, "q"),  # uncompressed_offset
        (3, "q"),  # uncompressed_size
        (4, _OFFSET),  # linkname
        (5, "q"),  # mode
        (6, "I"),  # uid
        (7, "I"),  # gid
        (8, _OFFSET),  # uname
        (9, _OFFSET),  # gname
        (10, _OFFSET),  # mod_time
        (11, "q"),  # devmajor
        (12, "q"),  # devminor
        (13, _OFFSET),  # xattrs
    ),
)
_XATTR = _Schema("Xattr", 2, ((0, _OFFSET), (1, _OFFSET)))
_COMPRESSION_INFO = _Schema(
    "CompressionInfo",
    4,
    (
        (1, "i"),  # max_span_id
        (2, _OFFSET),  # span_digests
        (3, _OFFSET),  # checkpoints
        (0, "b"),  # compression_algorithm, last
    ),
)
_TAR_ZINFO = _Schema("TarZinfo", 3, ((0, "i"), (1, "q"), (2, "q")))


class _TablePlan(NamedTuple):
    """Where each field of a table lands, for one set of present fields and one alignment."""

    packer: struct.Struct  # the table's bytes, lowest address first: vtable reference, fields
    fields: tuple[tuple[int, int, bool], ...]  # lowest first: (value index, offset(), reference?)
    size: int  # the table's bytes, reference to the vtable included
    layout: tuple[int, ...]  # the vtable's entries: per slot, the field's distance from the table
    largest: int  # the largest field alignment


_PlanKey = tuple[str, int, tuple[bool, ...]]  # table name, offset modulo 8, fields present


class _Builder:
    """The Go flatbuffers ``Builder``, reduced to the calls a zTOC needs.

    The buffer grows downward: ``offset()`` is the distance from the end, and
    every object is referred to by the offset it had when it was written.
    Padding depends on that distance, vtables are shared with the most recent
    identical one, and strings are never shared, all exactly as in Go.

    Written bytes are kept as chunks, last written first in the output, so
    nothing is ever moved; where a table's fields land (which depends only on
    which fields there are and on the offset modulo 8) is worked out once.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []  # in the order written: the output is them reversed
        self._done: list[bytes] = []  # runs of chunks already joined (and reversed)
        self._offset = 0
        self._minalign = 1
        self._plans: dict[_PlanKey, tuple[_TablePlan, list[int]]] = {}
        self._vtables: list[tuple[int, tuple[int, ...]]] = []  # (offset, layout), oldest first
        self._vtable_by_layout: dict[tuple[int, ...], list[int]] = {}  # [offset, or 0]
        self._largest_field_offset = 0

    def offset(self) -> int:
        return self._offset

    def _write(self, chunk: bytes) -> None:
        self._offset += len(chunk)
        if len(chunk) >= _LARGE_CHUNK:
            # Kept as its own run, never joined with its neighbours: the checkpoint blob
            # (32 KiB a span) is then copied once, into the output, and no more.
            self._flush_chunks()
            self._done.append(chunk)
            return
        self._chunks.append(chunk)
        self._bound_chunks()

    def _flush_chunks(self) -> None:
        if self._chunks:
            self._chunks.reverse()
            self._done.append(b"".join(self._chunks))
            self._chunks.clear()

    def _bound_chunks(self) -> None:
        """Join long runs of chunks: a list of small bytes objects costs more than their bytes."""
        if len(self._chunks) >= _CHUNKS_PER_RUN:
            self._flush_chunks()

    def _prep(self, size: int, additional: int) -> None:
        """Pad so that after writing ``additional`` bytes the next ``size`` bytes are aligned."""
        if size > self._minalign:
            self._minalign = size
        padding = -(self._offset + additional) & (size - 1)
        if padding:
            self._write(bytes(padding))

    def _prepend_offset(self, target: int) -> None:
        self._prep(4, 0)
        self._write(_U32.pack(self._offset + 4 - target))

    def create_string(self, text: bytes) -> int:
        return self.create_strings((text,))[0]

    def create_strings(self, texts: Sequence[bytes]) -> list[int]:
        """Go's CreateString for each text in turn (from a 4-aligned offset); their offsets."""
        return self.write_string_block(string_block(texts))

    def write_string_block(self, block: StringBlock) -> list[int]:
        """Strings laid out ahead of time; valid from a 4-aligned offset, where every
        string of a zTOC starts (after the header, after tables, after byte vectors)."""
        if self._offset % 4:
            raise AssertionError(f"string block at unaligned offset {self._offset}")
        if self._minalign < 4:
            self._minalign = 4
        base = self._offset
        self._write(block.data)
        return [base + end for end in block.ends]

    def create_byte_vector(self, data: bytes) -> int:
        self._prep(4, len(data))
        self._write(data)  # the buffer grows downward: the data, then its length before it
        self._write(_U32.pack(len(data)))
        return self._offset

    def create_offset_vector(self, targets: Sequence[int]) -> int:
        """A vector of references, given in the order they are to be read."""
        self._prep(4, 4 * len(targets))
        if not targets:  # every entry without xattrs has one
            self._write(_EMPTY_VECTOR)
            return self._offset
        after = self._offset + 4 * len(targets)  # the offset once every reference is written
        count = len(targets)
        # the length and every reference (after - 4 * index - target) in one pack
        references = map(sub, range(after, after - 4 * count, -4), targets)
        self._write(struct.pack(f"<{count + 1}I", count, *references))
        return self._offset

    def table(self, schema: _Schema, values: Sequence[int]) -> int:
        """A table of ``schema`` holding ``values`` (references: the objects' offsets).

        A value of 0 is left out, as Go leaves out scalars equal to their
        default (references are never 0). The table is written, then its
        vtable, unless an identical one can be shared.
        """
        start = self._offset
        key = (schema.name, start % 8, tuple(map(bool, values)))
        plan, written = self._plans.get(key) or self._plan(schema, key)
        object_offset = start + plan.size
        vtable = self._find_vtable(plan.layout, written, object_offset)
        new_vtable = not vtable
        if new_vtable:
            vtable = object_offset + 2 * (len(plan.layout) + 2)  # written right below the table
        packed = [
            start + position - values[index] if reference else values[index]
            for index, position, reference in plan.fields
        ]
        self._write(plan.packer.pack(vtable - object_offset, *packed))
        if plan.largest > self._minalign:
            self._minalign = plan.largest
        if new_vtable:
            self._write_vtable(plan, vtable)
        return object_offset

    def _plan(self, schema: _Schema, key: _PlanKey) -> tuple[_TablePlan, list[int]]:
        """The plan for ``key``, with the (shared) cell holding its layout's vtable offset."""
        plan = _plan_table(schema, key[1], key[2])
        planned = (plan, self._vtable_by_layout.setdefault(plan.layout, [0]))
        self._plans[key] = planned
        return planned

    def write_prepared_entries(self, entries: Sequence[PreparedEntry]) -> list[int]:
        """``_write_entry`` for each entry without xattrs, last first; their offsets.

        Each entry's bytes but the reference to its vtable were laid out ahead
        (``prepare_entry``) for both alignments its table can start at; here
        only the one for the current offset is picked, and the reference
        written, as ``table`` would: the same bytes for a fraction of the work.
        """
        if self._offset % 4:
            raise AssertionError(f"entries at unaligned offset {self._offset}")
        offsets = [0] * len(entries)
        chunks = self._chunks
        cells = self._vtable_by_layout
        pack = _I32.pack
        offset = self._offset
        for index in range(len(entries) - 1, -1, -1):
            strings, body, plan = entries[index][offset >> 2 & 1]
            chunks += (strings, body)
            object_offset = offset + len(strings) + len(body) + 4
            cell = cells.get(plan.layout)
            vtable = cell[0] if cell else 0
            if object_offset <= self._largest_field_offset:
                vtable = self._find_vtable(plan.layout, [vtable], object_offset)
            offsets[index] = offset = object_offset
            if plan.largest > self._minalign:
                self._minalign = plan.largest
            if vtable:
                chunks.append(pack(vtable - object_offset))
            else:
                vtable = object_offset + 2 * (len(plan.layout) + 2)
                chunks.append(pack(vtable - object_offset))
                self._offset = offset
                cells.setdefault(plan.layout, [0])
                self._write_vtable(plan, vtable)
                offset = self._offset
            if len(chunks) >= _CHUNKS_PER_RUN:
                self._flush_chunks()
                chunks = self._chunks
        self._offset = offset
        return offsets

    def _write_vtable(self, plan: _TablePlan, vtable: int) -> None:
        entries = (2 * (len(plan.layout) + 2), plan.size, *plan.layout)
        self._write(struct.pack(f"<{len(entries)}H", *entries))
        self._vtables.append((vtable, plan.layout))
        self._vtable_by_layout[plan.layout][0] = vtable  # a layout is only ever written once
        self._largest_field_offset = max(self._largest_field_offset, *plan.layout, 0)

    def _find_vtable(self, layout: tuple[int, ...], written: list[int], object_offset: int) -> int:
        """Go's search: the most recent vtable that ``vtableEqual`` accepts, or 0.

        Go compares an absent field (0 here) with a stored entry as if it were
        present at ``object_offset``; that quirk can only matter while the
        object offset is smaller than some stored field offset. Past that
        point the exact match gives the same answer (a layout is written once,
        and only when no earlier vtable matched it): ``written`` holds it.
        """
        if object_offset > self._largest_field_offset:
            return written[0]
        for vtable, stored in reversed(self._vtables):
            if len(stored) == len(layout) and all(
                mine == theirs or (not mine and theirs == object_offset)
                for mine, theirs in zip(layout, stored, strict=True)
            ):
                return vtable
        return 0

    def finish(self, root: int) -> bytes:
        self._prep(self._minalign, 4)
        self._prepend_offset(root)
        self._flush_chunks()
        return b"".join(reversed(self._done))


_CHUNKS_PER_RUN = 4096
_LARGE_CHUNK = 64 * 1024
_EMPTY_VECTOR = _U32.pack(0)
_NUL_AND_PADDING = [bytes(1 + padding) for padding in range(4)]
_EMPTY_STRING = _EMPTY_VECTOR + bytes(4)  # a length of 0, the NUL and padding


class StringBlock(NamedTuple):
    """Strings as consecutive CreateString calls lay them out from a 4-aligned offset.

    Each is its length, its bytes and a NUL, padded so the next lands 4-aligned,
    so the block does not depend on where it goes. A zTOC's entry strings can
    thus be prepared while the layer streams (``entry_strings``), leaving less
    to do once the last entry is known.
    """

    data: bytes  # lowest address first, as in the output
    ends: tuple[int, ...]  # per string, in creation order: the offset after it, from the block


def string_block(texts: Sequence[bytes]) -> StringBlock:
    return _join_pieces([_piece(text) for text in texts])


def _piece(text: bytes) -> bytes:
    """One string from a 4-aligned offset: its length, its bytes, a NUL and padding."""
    return _U32.pack(len(text)) + text + _NUL_AND_PADDING[-(len(text) + 1) & 3]


@lru_cache(maxsize=4096)
def _text_piece(text: str) -> bytes:
    """The pieces of strings that repeat from entry to entry (types, users, times)."""
    return _piece(text.encode("utf-8", "surrogateescape"))


def _join_pieces(pieces: list[bytes]) -> StringBlock:
    ends = tuple(accumulate(map(len, pieces)))
    pieces.reverse()
    return StringBlock(b"".join(pieces), ends)


# The vector and the strings (shared by both halves), the table less its vtable reference, and
# the table's plan. Kept for every entry of the layer until the end, so kept small.
PreparedHalf = tuple[bytes, bytes, "_TablePlan"]
PreparedEntry = tuple[PreparedHalf, PreparedHalf]  # for the entry at offset 0 and 4 modulo 8


def prepare_entry(entry: FileMetadata) -> PreparedEntry | None:
    """What ``serialize`` writes for ``entry`` (its strings, an empty xattr vector and
    its table), laid out ahead for either alignment; None for an entry with xattrs.

    An entry's table refers to its strings and xattr vector by distance, so
    all of its bytes depend only on where it starts modulo 8, except the
    reference to its vtable (``_Builder.write_prepared_entries``). This runs
    for every entry while the layer streams, so it does the least it can: the
    strings after the name repeat from entry to entry (``_entry_tail``), and
    so do the distances to them, which ``_entry_packers`` folds into how the
    table is packed.
    """
    (
        name,
        kind,
        offset,
        size,
        linkname,
        mode,
        uid,
        gid,
        uname,
        gname,
        mtime,
        major,
        minor,
        xattrs,
    ) = entry
    if xattrs:
        return None
    raw = name.encode("utf-8", "surrogateescape")
    name_piece = _U32.pack(len(raw)) + raw + _NUL_AND_PADDING[-(len(raw) + 1) & 3]
    tail = _entry_tail(kind, uname, gname, mtime)
    link_piece = _piece(_encode(linkname)) if linkname else _EMPTY_STRING
    key = (
        tail,
        len(link_piece),
        len(name_piece) & 4,
        offset != 0,
        size != 0,
        mode != 0,
        uid != 0,
        gid != 0,
        major != 0,
        minor != 0,
    )
    (pick0, refs0, rest0, plan0), (pick1, refs1, rest1, plan1) = _ENTRY_PACKERS.get(
        key
    ) or _entry_packers(key)
    values = (offset, size, mode, uid, gid, major, minor)
    data = tail.owner + link_piece + tail.kind + name_piece  # lowest address first
    return (
        (data, rest0.pack(*pick0(values + refs0)), plan0),
        (data, rest1.pack(*pick1(values + refs1)), plan1),
    )


class _EntryTail(NamedTuple):
    """The strings of an entry that repeat from entry to entry: its type, and its owner
    and time with the empty xattr vector after them, each laid out as below the link
    (lowest address first); and the distances of the owner strings' ends back from the
    table, where the vector ends."""

    kind: bytes
    owner: bytes  # the vector, mod_time, gname, uname
    distances: tuple[int, int, int, int]  # uname, gname, mod_time, and where the link ends


@lru_cache(maxsize=4096)
def _entry_tail(kind: str, uname: str, gname: str, mod_time: str) -> _EntryTail:
    pieces = [_text_piece(uname), _text_piece(gname), _text_piece(mod_time), _EMPTY_VECTOR]
    # From the table back, where each string ends: the mod_time after the vector, ...
    mod_time_end, gname_end, uname_end, link_end = accumulate(map(len, reversed(pieces)))
    return _EntryTail(
        _text_piece(kind),
        b"".join(reversed(pieces)),
        (uname_end, gname_end, mod_time_end, link_end),
    )


_EntryPacker = tuple[
    Callable[[tuple[int, ...]], tuple[int, ...]], tuple[int, ...], struct.Struct, "_TablePlan"
]
_ENTRY_PACKERS: dict[tuple[object, ...], tuple[_EntryPacker, _EntryPacker]] = {}
_ENTRY_PACKERS_LIMIT = 4096  # kinds of entries kept; beyond it the cache starts over


def _entry_packers(key: tuple[object, ...]) -> tuple[_EntryPacker, _EntryPacker]:
    """For an entry table of ``key``'s shape, at either alignment: how to pack its fields
    from ``(offset, size, mode, uid, gid, devmajor, devminor)`` and the references.

    A field that refers to a string holds the string's distance back from
    the table's start plus the field's own position in the table: both are
    known from the key, so the references are constants (``refs``), picked
    with the values into the table's field order.
    """
    tail, link_length, name_alignment, *scalars = key
    assert isinstance(tail, _EntryTail)
    assert isinstance(link_length, int)
    assert isinstance(name_alignment, int)
    offset, size, mode, uid, gid, major, minor = map(bool, scalars)
    present = (True, True, offset, size, True, mode, uid, gid, True, True, True, major, minor, True)
    uname, gname, mtime, link = tail.distances
    kind = link + link_length
    name = kind + len(tail.kind)
    # per field of the schema: the index of its value, or None and its distance (a reference)
    sources = ((None, name), (None, kind), (0, 0), (1, 0), (None, link), (2, 0), (3, 0), (4, 0),
               (None, uname), (None, gname), (None, mtime), (5, 0), (6, 0), (None, 0))  # fmt: skip
    table_alignment = name_alignment + name  # from the name's start, mod 8
    packers = []
    for start in (0, 4):
        plan = _plan_table(_FILE_METADATA, (start + table_alignment) % 8, present)
        indices: list[int] = []
        refs: list[int] = []
        for index, position, _ in plan.fields:
            value, distance = sources[index]
            if value is None:
                refs.append(position + distance)
                value = _ENTRY_VALUES + len(refs) - 1
            indices.append(value)
        # The table's format less its leading vtable reference ("<i" and nothing before it).
        rest = struct.Struct("<" + plan.packer.format.removeprefix("<i"))
        packers.append((itemgetter(*indices), tuple(refs), rest, plan))
    if len(_ENTRY_PACKERS) >= _ENTRY_PACKERS_LIMIT:
        _ENTRY_PACKERS.clear()
    _ENTRY_PACKERS[key] = (packers[0], packers[1])
    return _ENTRY_PACKERS[key]


_ENTRY_VALUES = 7  # offset, size, mode, uid, gid, devmajor, devminor


def entry_strings(entry: FileMetadata) -> StringBlock:
    """The six strings of a TOC entry, for ``serialize(..., prepared=...)``."""
    name = _piece(entry.name.encode("utf-8", "surrogateescape"))
    linkname = _piece(entry.linkname.encode("utf-8", "surrogateescape"))
    repeated = map(_text_piece, (entry.uname, entry.gname, entry.mod_time))
    return _join_pieces([name, _text_piece(entry.type), linkname, *repeated])


@lru_cache(maxsize=1024)
def _plan_table(schema: _Schema, alignment: int, present: tuple[bool, ...]) -> _TablePlan:
    """Lay fields out as Go's Prepend*Slot calls would, starting ``alignment`` (mod 8) bytes in.

    Each field is padded to its own size, then the reference to the vtable
    (an int32) is prepended; offsets count from the table's start.
    """
    position = alignment
    codes = []  # struct codes, highest address first
    fields = []
    for index, ((_, code), there) in enumerate(zip(schema.fields, present, strict=True)):
        if not there:
            continue
        size = _FIELD_SIZES[code]
        padding = -position & (size - 1)
        codes += [f"{padding}x", "I" if code == _OFFSET else code]
        position += padding + size
        fields.append((index, position - alignment, code == _OFFSET))
    padding = -position & 3
    codes += [f"{padding}x", "i"]
    size = position + padding + 4 - alignment
    layout = [0] * schema.slots
    for index, field_position, _ in fields:
        layout[schema.fields[index][0]] = size - field_position
    while layout and not layout[-1]:
        layout.pop()
    largest = max([4, *(_FIELD_SIZES[schema.fields[index][1]] for index, _, _ in fields)])
    return _TablePlan(
        struct.Struct("<" + "".join(reversed(codes))),
        tuple(reversed(fields)),
        size,
        tuple(layout),
        largest,
    )


def serialize(ztoc: Ztoc, *, prepared: Sequence[PreparedEntry | None] | None = None) -> bytes:
    """The zTOC's flatbuffer bytes, byte-identical to the reference builder's.

    ``prepared`` may hold ``prepare_entry`` of every entry, computed ahead.
    """
    builder = _Builder()
    version = builder.create_string(_encode(ztoc.version))
    build_tool = builder.create_string(_encode(ztoc.build_tool_identifier))
    toc = _write_toc(builder, ztoc.metadata, prepared)
    compression = _write_compression_info(builder, ztoc.compression)
    root = builder.table(
        _ZTOC,
        (
            version,
            build_tool,
            toc,
            ztoc.compressed_archive_size,
            ztoc.uncompressed_archive_size,
            compression,
        ),
    )
    return builder.finish(root)


def _write_toc(
    builder: _Builder,
    metadata: Sequence[FileMetadata],
    prepared: Sequence[PreparedEntry | None] | None,
) -> int:
    """The TOC, entries created last first so that they read in archive order: runs of
    entries without xattrs in bulk, the others one by one."""
    if prepared is None:
        prepared = [prepare_entry(entry) for entry in metadata]
    entries = [0] * len(metadata)
    end = len(metadata)
    while end:
        start = end
        while start and prepared[start - 1] is not None:
            start -= 1
        if start < end:
            run = cast("list[PreparedEntry]", prepared[start:end])
            entries[start:end] = builder.write_prepared_entries(run)
        if start:
            start -= 1
            entry = metadata[start]
            entries[start] = _write_entry(builder, entry, entry_strings(entry))
        end = start
    vector = builder.create_offset_vector(entries)
    return builder.table(_TOC, (vector,))


def _write_entry(builder: _Builder, entry: FileMetadata, strings: StringBlock) -> int:
    name, kind, linkname, uname, gname, mod_time = builder.write_string_block(strings)
    xattrs = builder.create_offset_vector([_write_xattr(builder, *xattr) for xattr in entry.xattrs])
    return builder.table(
        _FILE_METADATA,
        (
            name,
            kind,
            entry.uncompressed_offset,
            entry.uncompressed_size,
            linkname,
            entry.mode,
            entry.uid,
            entry.gid,
            uname,
            gname,
            mod_time,
            entry.devmajor,
            entry.devminor,
            xattrs,
        ),
    )


def _write_xattr(builder: _Builder, key: str, value: str) -> int:
    return builder.table(_XATTR, builder.create_strings((_encode(key), _encode(value))))


def _write_compression_info(builder: _Builder, info: CompressionInfo) -> int:
    checkpoints = builder.create_byte_vector(info.checkpoints)
    digests = [builder.create_string(_encode(digest)) for digest in info.span_digests]
    digest_vector = builder.create_offset_vector(digests)
    not_default = 0 if info.algorithm is Compression.GZIP else info.algorithm  # gzip: not written
    return builder.table(
        _COMPRESSION_INFO, (info.max_span_id, digest_vector, checkpoints, not_default)
    )


def serialize_tar_zinfo(zinfo: TarZinfo) -> bytes:
    """The ``checkpoints`` bytes of an uncompressed layer (SOCI-FORMAT.md 2.4)."""
    builder = _Builder()
    return builder.finish(builder.table(_TAR_ZINFO, (zinfo.version, zinfo.span_size, zinfo.size)))


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
