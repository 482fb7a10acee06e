"""A streaming tar header reader that says what Go's ``archive/tar`` says.

The snapshotter re-reads every header with Go's reader and compares it with
the TOC, so each rule here is Go's, not Python's ``tarfile``'s
(SOCI-FORMAT.md 1.1): the checksum may be signed, numbers may be base-256,
a later PAX header replaces an earlier one, GNU long names override PAX
paths, and the archive ends after two zero blocks, at a clean EOF, or at an
EOF inside the padding after an entry's data.

Only headers are read. The reader is fed the stream in pieces and skips
file contents by offset arithmetic, so it costs nothing per byte of data.
"""

from __future__ import annotations

import contextlib
import re
import struct
import zlib
from collections.abc import Callable, Generator
from functools import lru_cache, partial
from typing import NamedTuple, cast

from soci_indexer.engine.ztoc import FileMetadata
from soci_indexer.errors import CorruptLayer, UnsupportedLayer

BLOCK = 512
MAX_SPECIAL_FILE = 1024 * 1024  # Go refuses PAX and GNU long-name data beyond this
ZERO_BLOCK = bytes(BLOCK)

# name mode uid gid size mtime chksum typeflag linkname magic version uname gname
# devmajor devminor prefix (USTAR's 155 bytes), rest
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12s")
_CHECKSUM = slice(148, 156)
_STAR_PREFIX = slice(345, 476)
_STAR_TIMES = (slice(476, 488), slice(488, 500))
_GNU_TIMES = (slice(345, 357), slice(357, 369))
_STAR_TRAILER = slice(508, 512)

# Numbers as tar writers (Go, GNU tar, Python) usually write them: zero-padded octal and a
# NUL, the checksum with a NUL and a space; devices may be all NULs. Other forms take the
# general path, _numeric.
_USUAL_NUMBERS = re.compile(rb"(?:[0-7]{7}\x00){3}(?:[0-7]{11}\x00){2}[0-7]{6}\x00 ")
_BITS_18, _BITS_21, _BITS_33 = (1 << 18) - 1, (1 << 21) - 1, (1 << 33) - 1
_NO_DEVICE_NUMBERS = frozenset({bytes(16), b"0000000\x00" * 2})  # devmajor + devminor

_ENTRY_TYPES = {
    b"0": "reg",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
}
_HEADER_ONLY_TYPES = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})  # no data section
_UNSUPPORTED_TYPES = {
    b"g": "global PAX header",
    b"S": "GNU sparse file",
    b"7": "contiguous file",
    b"V": "GNU volume label",
    b"M": "GNU multi-volume continuation",
    b"D": "GNU dump directory",
}
_PAX_HEADER, _GNU_LONG_NAME, _GNU_LONG_LINK, _OLD_REGULAR = b"x", b"L", b"K", b"\x00"

_GO_INT = re.compile(rb"[+-]?[0-9]+")  # what strconv.ParseInt(s, 10, 64) accepts
_INT64 = range(-(2**63), 2**63)
_NO_NUL_VALUE_KEYS = frozenset({b"path", b"linkpath", b"uname", b"gname"})
_SPARSE_OFFSET, _SPARSE_NUMBYTES = b"GNU.sparse.offset", b"GNU.sparse.numbytes"
_SPARSE_MAP, _SPARSE_MAJOR, _SPARSE_MINOR = (
    b"GNU.sparse.map",
    b"GNU.sparse.major",
    b"GNU.sparse.minor",
)


class TarReader:
    """Go's ``tar.Reader.Next`` over a stream given piece by piece.

    Call ``feed`` with consecutive pieces of the (uncompressed) tar stream,
    then ``close`` with the stream's length. ``entries`` then holds one
    FileMetadata per entry, in archive order, and ``end`` the position where
    Go's reader stopped (the zTOC's ``uncompressed_archive_size``).
    Malformed input raises CorruptLayer; entry kinds SOCI cannot index
    raise UnsupportedLayer.
    """

    def __init__(self) -> None:
        self.entries: list[FileMetadata] = []
        self.end: int | None = None
        self._eof: int | None = None
        self._pending = bytearray()  # the start of the wanted bytes, when they span pieces
        self._plain_next = False  # the parser waits for a header, with no PAX or long name
        self._data_end = 0  # after _read_plain: the end of the last entry's data
        self._parser = self._parse()
        self._want = next(self._parser)

    def feed(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Read the stream bytes ``[offset, offset + len(data))``; pieces come in order."""
        send = self._parser.send
        pending = self._pending
        with contextlib.suppress(StopIteration):  # the parser returns once the archive ends
            while True:
                start, length = self._want
                have = len(pending)
                first = start + have - offset
                if first >= len(data):
                    return
                if self._plain_next and not have:
                    position = self._read_plain(data, offset, first)
                    if position != start:
                        self._want = send(_Skip(position, self._data_end))
                        continue
                take = min(length - have, len(data) - first)
                if not have and take == length:
                    self._want = send(bytes(data[first : first + length]))
                    continue
                pending += data[first : first + take]
                if len(pending) < length:
                    return
                piece = bytes(pending)
                pending.clear()
                self._want = send(piece)

    def _read_plain(self, data: bytes | bytearray | memoryview, offset: int, first: int) -> int:
        """Read the plain headers from ``data[first:]`` on; the stream position after them.

        Most headers are plain: a file, directory or link in a USTAR (or
        GNU) header written the usual way, with no PAX record or long name
        before it. This reads those in one tight loop, as ``_parse`` would;
        at the first header that is anything else (or at the end of
        ``data``) it stops, and ``_parse`` takes over from there.
        """
        entries = self.entries
        end = len(data) - BLOCK
        position = offset + first
        while first <= end:
            block = bytes(data[first : first + BLOCK])
            kind = block[156:157]
            if kind not in _HEADER_ONLY_TYPES and kind != b"0":
                break
            if not _USUAL_NUMBERS.match(block, 100):
                break
            number = int(block[100:154].replace(b"\x00", b""), 8)
            if number & _BITS_18 != _byte_sum(block) or block[329:345] not in _NO_DEVICE_NUMBERS:
                break
            magic = block[257:265]  # magic and version
            if magic[:6] == b"ustar\x00" and block[_STAR_TRAILER] != b"tar\x00":
                prefix = block[345:500].partition(b"\x00")[0]
            elif magic == b"ustar  \x00" and not block[345] and not block[357]:
                prefix = b""  # GNU, with no access or change time that could be a prefix
            else:
                break
            name = block[:100].partition(b"\x00")[0]
            if prefix:
                name = prefix + b"/" + name
            size = number >> 51 & _BITS_33
            position += BLOCK
            entries.append(
                _new_entry(
                    (
                        name.decode("utf-8", "surrogateescape"),
                        _ENTRY_TYPES[kind],
                        position,  # uncompressed_offset
                        size,
                        block[157:257].partition(b"\x00")[0].decode("utf-8", "surrogateescape"),
                        number >> 126,  # mode
                        number >> 105 & _BITS_21,  # uid
                        number >> 84 & _BITS_21,  # gid
                        block[265:297].partition(b"\x00")[0].decode("utf-8", "surrogateescape"),
                        block[297:329].partition(b"\x00")[0].decode("utf-8", "surrogateescape"),
                        go_time_text(number >> 18 & _BITS_33),
                        0,  # devmajor
                        0,  # devminor
                        (),  # xattrs
                    )
                )
            )
            if kind != b"0":
                size = 0  # links, directories and devices have no data section
            self._data_end = position + size
            padded = -(-size // BLOCK) * BLOCK
            position += padded
            first += BLOCK + padded
        return position

    def close(self, length: int) -> int:
        """The stream ended after ``length`` bytes: finish, and return ``end``."""
        self._eof = length
        with contextlib.suppress(StopIteration):
            while self.end is None:  # each request from here on gets what is left: little or none
                piece = bytes(self._pending)
                self._pending.clear()
                self._want = self._parser.send(piece)
        assert self.end is not None
        return self.end

    def _parse(self) -> Generator[tuple[int, int], bytes | _Skip, None]:
        """Go's ``Reader.next`` loop. Yields (offset, length) wanted, receives those bytes.

        The bytes received are shorter than asked only once the stream has
        ended (``self._eof`` is then set). Asked for a header with no PAX
        record or long name pending, it may instead receive a ``_Skip``:
        ``_read_plain`` has read the plain entries up to there.
        """
        position = 0  # of the next header
        data_end = 0  # end of the previous entry's data, before its padding
        pax: dict[bytes, bytes] = {}
        long_name = long_link = b""
        while True:
            self._plain_next = not (pax or long_name or long_link)
            block = yield position, BLOCK
            self._plain_next = False
            if isinstance(block, _Skip):
                position, data_end = block
                continue
            if len(block) < BLOCK:
                self.end = self._end_at_eof(block, position, data_end)
                return
            if block == ZERO_BLOCK:
                self.end = yield from self._second_zero_block(position + BLOCK)
                return
            header = _Header(block, position)
            data_start = position + BLOCK
            kind = header.typeflag
            if kind not in _HEADER_ONLY_TYPES and header.size < 0:
                raise CorruptLayer("tar header has a negative size", position)
            if kind in (_PAX_HEADER, _GNU_LONG_NAME, _GNU_LONG_LINK):
                size = _special_file_size(header, position)
                data = cast(bytes, (yield data_start, size))  # a _Skip comes only for a header
                if len(data) < header.size:
                    raise CorruptLayer("tar stream ends inside an extended header", self._eof)
                if kind == _PAX_HEADER:
                    pax = _parse_pax(data, data_start)
                elif kind == _GNU_LONG_NAME:
                    long_name = _c_string(data)
                else:
                    long_link = _c_string(data)
                data_end = data_start + header.size
                position = data_start + _padded(header.size)
                continue
            if kind not in _ENTRY_TYPES and kind != _OLD_REGULAR:
                what = _UNSUPPORTED_TYPES.get(kind, "unknown entry type")
                raise UnsupportedLayer(f"tar entry of type {kind!r} ({what})", position)
            entry = _entry(header, pax, long_name, long_link, data_start)
            self.entries.append(entry)
            size = entry.uncompressed_size if entry.type == "reg" else 0
            if size < 0:
                raise CorruptLayer("tar entry has a negative size", position)
            data_end = data_start + size
            position = data_start + _padded(size)
            pax = {}
            long_name = long_link = b""

    def _end_at_eof(self, block: bytes, position: int, data_end: int) -> int:
        """Where Go's reader stops when the stream ends before a whole header."""
        eof = self._eof
        assert eof is not None
        if eof < data_end:
            raise CorruptLayer("tar stream ends inside an entry's data", eof)
        if block:
            raise CorruptLayer("tar stream ends inside a header", eof)
        return eof  # at a header boundary, or inside the padding after data: a clean end

    def _second_zero_block(self, position: int) -> Generator[tuple[int, int], bytes, int]:
        block = yield position, BLOCK
        if not block:
            return position  # one zero block, then EOF
        if len(block) < BLOCK:
            raise CorruptLayer("tar stream ends inside a header", self._eof)
        if block != ZERO_BLOCK:
            raise CorruptLayer("a zero block is followed by a non-zero block", position)
        return position + BLOCK


class _Skip(NamedTuple):
    """``_read_plain`` read the entries up to ``position``; the last one's data ended at
    ``data_end``."""

    position: int
    data_end: int


_new_entry = cast(
    "Callable[[tuple[object, ...]], FileMetadata]", partial(tuple.__new__, FileMetadata)
)  # FileMetadata(*fields) without NamedTuple's __new__ in Python: a call per header saved


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _special_file_size(header: _Header, position: int) -> int:
    if header.size > MAX_SPECIAL_FILE:
        raise UnsupportedLayer(
            f"extended tar header of {header.size} bytes is over the 1 MiB limit", position
        )
    return header.size


def _c_string(field: bytes) -> bytes:
    """Go's parseString: the bytes up to the first NUL."""
    return field.partition(b"\x00")[0]


class _Header:
    """One 512-byte header block decoded as Go's ``readHeader`` does."""

    __slots__ = (
        "devmajor",
        "devminor",
        "gid",
        "gname",
        "linkname",
        "mode",
        "mtime",
        "name",
        "size",
        "typeflag",
        "uid",
        "uname",
    )

    def __init__(self, block: bytes, position: int) -> None:
        (
            name,
            mode,
            uid,
            gid,
            size,
            mtime,
            checksum,
            self.typeflag,
            linkname,
            magic,
            version,
            uname,
            gname,
            devmajor,
            devminor,
            prefix,
            _,
        ) = _HEADER.unpack(block)
        usual = _usual_numbers(block)
        try:
            expected = usual[-1] if usual else _octal(checksum)
        except ValueError:
            expected = -1
        if expected != _byte_sum(block) and not _signed_checksum_matches(block, expected):
            raise CorruptLayer("tar header checksum mismatch", position)
        try:
            if usual:
                self.mode, self.uid, self.gid, self.size, self.mtime, _ = usual
            else:
                self.mode, self.uid, self.gid = _numeric(mode), _numeric(uid), _numeric(gid)
                self.size, self.mtime = _numeric(size), _numeric(mtime)
            self.uname = self.gname = b""
            self.devmajor = self.devminor = 0
            # x.partition(b"\x00")[0] is _c_string, inlined in this hot path
            if magic == b"ustar\x00" and block[_STAR_TRAILER] == b"tar\x00":
                prefix = block[_STAR_PREFIX].partition(b"\x00")[0]
                for times in _STAR_TIMES:
                    _numeric(block[times])
            elif magic == b"ustar\x00":
                prefix = prefix.partition(b"\x00")[0]
            elif magic == b"ustar " and version == b" \x00":
                prefix = _gnu_prefix(block, prefix)
            else:  # V7: no user names, device numbers or prefix
                prefix = None
            if prefix is not None:
                self.uname = uname.partition(b"\x00")[0]
                self.gname = gname.partition(b"\x00")[0]
                if devmajor + devminor not in _NO_DEVICE_NUMBERS:
                    self.devmajor, self.devminor = _numeric(devmajor), _numeric(devminor)
        except ValueError:
            raise CorruptLayer("tar header has a malformed number", position) from None
        name = name.partition(b"\x00")[0]
        self.name = prefix + b"/" + name if prefix else name
        self.linkname = linkname.partition(b"\x00")[0]


def _usual_numbers(block: bytes) -> tuple[int, int, int, int, int, int] | None:
    """mode, uid, gid, size, mtime and checksum, when written the usual way; else None.

    Writers (Go, GNU tar, Python) put these fields next to each other as
    zero-padded octal, each ending in a NUL (the checksum in NUL and space).
    Then the 49 digits read as one octal number and split by bit position:
    one conversion instead of six, in the loop that reads every header.
    """
    if not _USUAL_NUMBERS.match(block, 100):
        return None
    number = int(block[100:154].replace(b"\x00", b""), 8)  # 3 bits a digit, checksum lowest
    return (
        number >> 126,  # mode: 7 digits
        number >> 105 & _BITS_21,  # uid: 7 digits
        number >> 84 & _BITS_21,  # gid: 7 digits
        number >> 51 & _BITS_33,  # size: 11 digits
        number >> 18 & _BITS_33,  # mtime: 11 digits
        number & _BITS_18,  # checksum: 6 digits
    )


def _gnu_prefix(block: bytes, prefix: bytes) -> bytes:
    """GNU headers have no prefix, except those old Go writers produced (golang.org/issue/12594).

    Go tells them apart by the access and change time fields: when either is
    set and does not parse as a number, the bytes are taken as a prefix if
    they are ASCII.
    """
    for times in _GNU_TIMES:
        field = block[times]
        if field[0]:
            try:
                _numeric(field)
            except ValueError:
                text = _c_string(prefix)
                return text if text.isascii() else b""
    return b""


def _byte_sum(block: bytes) -> int:
    """Go's unsigned checksum: the sum of the bytes, the checksum field counted as spaces."""
    # adler32's low half is 1 + the byte sum mod 65521, and 256 bytes sum to at most 65280.
    halves = (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2
    field = (zlib.adler32(block[_CHECKSUM]) & 0xFFFF) - 1
    return halves - field + 8 * ord(" ")


def _signed_checksum_matches(block: bytes, expected: int) -> bool:
    """Go also accepts the sum of the bytes taken as signed (old tar writers)."""
    high_bytes = sum(1 for byte in block if byte >= 0x80) - sum(
        1 for byte in block[_CHECKSUM] if byte >= 0x80
    )
    return expected == _byte_sum(block) - 256 * high_bytes


def _numeric(field: bytes) -> int:
    """Go's parseNumeric: base-256 when the top bit is set, else octal. ValueError if neither."""
    if field[0] & 0x80:
        return _base256(field)
    return _octal(field)


def _base256(field: bytes) -> int:
    bits = 8 * len(field)
    value = int.from_bytes(field, "big")
    negative = field[0] & 0x40
    if negative:
        value ^= (1 << bits) - 1
    value &= (1 << (bits - 1)) - 1  # drop the marker bit
    if value >> 63:
        raise ValueError("base-256 number overflows int64")
    return ~value if negative else value


def _octal(field: bytes) -> int:
    digits = _c_string(field.strip(b" \x00"))
    if not digits:
        return 0
    if not digits.isdigit():  # int() would also take signs, underscores and whitespace
        raise ValueError("not an octal number")
    return int(digits, 8)


# --------------------------------------------------------------------------- PAX


def _parse_pax(data: bytes, offset: int) -> dict[bytes, bytes]:
    """Go's parsePAX: every record of an ``x`` header, later duplicates winning."""
    records: dict[bytes, bytes] = {}
    sparse_map: list[bytes] = []
    rest = data
    while rest:
        key, value, rest = _pax_record(rest, offset + len(data) - len(rest))
        if key in (_SPARSE_OFFSET, _SPARSE_NUMBYTES):
            expected = _SPARSE_OFFSET if len(sparse_map) % 2 == 0 else _SPARSE_NUMBYTES
            if key != expected or b"," in value:
                raise CorruptLayer("malformed GNU sparse record in a PAX header", offset)
            sparse_map.append(value)
        else:
            records[key] = value
    if sparse_map:
        records[_SPARSE_MAP] = b",".join(sparse_map)
    return records


def _pax_record(text: bytes, offset: int) -> tuple[bytes, bytes, bytes]:
    """One ``"%d %s=%s\\n"`` record: (key, value, the rest)."""
    length_text, space, rest = text.partition(b" ")
    if not space or not _GO_INT.fullmatch(length_text):
        raise CorruptLayer("malformed PAX record length", offset)
    length = int(length_text)
    if length < 5 or length > len(text) or length <= len(length_text) + 1:
        raise CorruptLayer("PAX record length out of range", offset)
    body_length = length - len(length_text) - 1
    record, newline = rest[: body_length - 1], rest[body_length - 1 : body_length]
    key, equals, value = record.partition(b"=")
    if newline != b"\n" or not equals or not key:
        raise CorruptLayer("malformed PAX record", offset)
    if b"\x00" in (value if key in _NO_NUL_VALUE_KEYS else key):
        raise CorruptLayer("PAX record holds a NUL byte", offset)
    return key, value, rest[body_length:]


def _go_int(text: bytes) -> int:
    """strconv.ParseInt(text, 10, 64); ValueError where Go fails."""
    if not _GO_INT.fullmatch(text):
        raise ValueError("not a decimal number")
    value = int(text)
    if value not in _INT64:
        raise ValueError("out of int64 range")
    return value


def _pax_time(text: bytes) -> tuple[int, int]:
    """Go's parsePAXTime: (seconds, nanoseconds) of ``[-]S[.F]``, F cut or padded to 9 digits."""
    seconds_text, _, fraction = text.partition(b".")
    seconds = _go_int(seconds_text)
    if not fraction:
        return seconds, 0
    if not fraction.isdigit():
        raise ValueError("fraction is not decimal")
    nanos = int(fraction[:9].ljust(9, b"0"))
    if seconds_text.startswith(b"-"):
        nanos = -nanos
    return seconds + nanos // 1_000_000_000, nanos % 1_000_000_000


def _is_gnu_sparse(pax: dict[bytes, bytes]) -> bool:
    """Go's test for a PAX-format GNU sparse file (readGNUSparsePAXHeaders)."""
    major, minor = pax.get(_SPARSE_MAJOR, b""), pax.get(_SPARSE_MINOR, b"")
    if major or minor:
        return (major, minor) in ((b"0", b"0"), (b"0", b"1"), (b"1", b"0"))
    return bool(pax.get(_SPARSE_MAP))


# --------------------------------------------------------------------------- entries


def _entry(
    header: _Header,
    pax: dict[bytes, bytes],
    long_name: bytes,
    long_link: bytes,
    data_start: int,
) -> FileMetadata:
    """The TOC entry of a file header, PAX records and GNU long names applied."""
    name, linkname, size = header.name, header.linkname, header.size
    uname, gname, uid, gid = header.uname, header.gname, header.uid, header.gid
    mtime = (header.mtime, 0)
    xattrs: tuple[tuple[str, str], ...] = ()
    if pax:
        if _is_gnu_sparse(pax):
            raise UnsupportedLayer("GNU sparse file (PAX format)", data_start - BLOCK)
        try:
            name = pax.get(b"path") or name
            linkname = pax.get(b"linkpath") or linkname
            uname = pax.get(b"uname") or uname
            gname = pax.get(b"gname") or gname
            uid = _go_int(pax[b"uid"]) if pax.get(b"uid") else uid
            gid = _go_int(pax[b"gid"]) if pax.get(b"gid") else gid
            size = _go_int(pax[b"size"]) if pax.get(b"size") else size
            mtime = _pax_time(pax[b"mtime"]) if pax.get(b"mtime") else mtime
            for key in (b"atime", b"ctime"):
                if pax.get(key):
                    _pax_time(pax[key])
        except ValueError:
            raise CorruptLayer("PAX record has a malformed number", data_start - BLOCK) from None
        xattrs = tuple((_text(key), _text(pax[key])) for key in sorted(pax))
    name = long_name or name
    linkname = long_link or linkname
    kind = header.typeflag
    if kind == _OLD_REGULAR:
        kind = b"5" if name.endswith(b"/") else b"0"
    return FileMetadata(  # positionally: a layer has tens of thousands of entries
        name.decode("utf-8", "surrogateescape"),
        _ENTRY_TYPES[kind],
        data_start,  # uncompressed_offset
        size,
        linkname.decode("utf-8", "surrogateescape"),
        header.mode,
        uid & 0xFFFFFFFF,
        gid & 0xFFFFFFFF,
        uname.decode("utf-8", "surrogateescape"),
        gname.decode("utf-8", "surrogateescape"),
        go_time_text(*mtime),
        header.devmajor,
        header.devminor,
        xattrs,
    )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@lru_cache(maxsize=4096)
def go_time_text(seconds: int, nanos: int = 0) -> str:
    """Go's ``time.Time.MarshalText`` of a Unix time, in UTC; "" outside years 0-9999."""
    days, second_of_day = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    if not 0 <= year <= 9999:
        return ""
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of days since 1970-01-01, any year.

    Python's datetime stops at year 1; Go's times (and tar mtimes) do not.
    The algorithm is Howard Hinnant's ``civil_from_days``.
    """
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day
