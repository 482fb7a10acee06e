"""The tar reader follows Go's archive/tar, on headers built byte by byte here."""

from __future__ import annotations

import pytest
from soci_indexer.engine.tar import TarReader, go_time_text
from soci_indexer.engine.ztoc import FileMetadata
from soci_indexer.errors import CorruptLayer

BLOCK = 512
END = bytes(2 * BLOCK)
FIELDS = {  # offset, length
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "typeflag": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 6),
    "version": (263, 2),
    "uname": (265, 32),
    "gname": (297, 32),
    "devmajor": (329, 8),
    "devminor": (337, 8),
    "prefix": (345, 155),
}
USTAR = {"magic": b"ustar\x00", "version": b"00"}
GNU = {"magic": b"ustar ", "version": b" \x00"}


def header(checksum: str = "unsigned", **fields: bytes) -> bytes:
    """One header block: ustar defaults, ``fields`` written raw at their offsets."""
    values = {
        "name": b"file",
        "mode": b"0000644\x00",
        "uid": b"0000000\x00",
        "gid": b"0000000\x00",
        "size": b"00000000000\x00",
        "mtime": b"14524761000\x00",  # 1699996160
        "typeflag": b"0",
        **USTAR,
        **fields,
    }
    block = bytearray(BLOCK)
    for key, raw in values.items():
        if key in FIELDS:
            offset, length = FIELDS[key]
            assert len(raw) <= length, key
            block[offset : offset + len(raw)] = raw
        else:  # an absolute offset, for fields of other formats
            offset = int(key.removeprefix("at"))
            block[offset : offset + len(raw)] = raw
    block[148:156] = b" " * 8
    total = sum(block) if checksum == "unsigned" else sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = b"%06o\x00 " % (total & 0o777777)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax(*records: tuple[bytes, bytes]) -> bytes:
    """An ``x`` header and its records, each ``"%d %s=%s\\n"`` with the length counting itself."""
    body = b""
    for key, value in records:
        rest = b" " + key + b"=" + value + b"\n"
        length = len(rest) + 1
        while len(str(length)) + len(rest) != length:
            length += 1
        body += str(length).encode() + rest
    return header(name=b"PaxHeader", typeflag=b"x", size=b"%011o\x00" % len(body)) + padded(body)


def read(stream: bytes) -> tuple[list[FileMetadata], int]:
    reader = TarReader()
    reader.feed(stream, 0)
    end = reader.close(len(stream))
    return reader.entries, end


def only(stream: bytes) -> FileMetadata:
    entries, _ = read(stream + END)
    assert len(entries) == 1
    return entries[0]


def test_a_checksum_computed_over_signed_bytes_is_accepted() -> None:
    entry = only(header(checksum="signed", name="é.txt".encode()))
    assert entry.name == "é.txt"


def test_base_256_numbers_are_read_as_twos_complement() -> None:
    negative_uid = b"\xff" * 7 + b"\xfe"  # -2
    size = b"\x80" + bytes(7) + (70000).to_bytes(4, "big")
    entry = only(header(uid=negative_uid, size=size) + padded(bytes(70000)))
    assert entry.uid == 2**32 - 2
    assert entry.uncompressed_size == 70000


def test_octal_fields_may_be_padded_with_spaces_and_nuls() -> None:
    entry = only(header(mode=b"  755 \x00 ", uid=b"\x00\x0012\x00\x00\x00\x00"))
    assert (entry.mode, entry.uid) == (0o755, 0o12)


def test_ustar_names_are_prefix_slash_name() -> None:
    entry = only(header(name=b"c.txt", prefix=b"a/b"))
    assert entry.name == "a/b/c.txt"


def test_star_headers_take_a_131_byte_prefix() -> None:
    prefix = b"star" + b"x" * 127
    times = b"00000000000\x00"  # STAR's atime and ctime follow its prefix
    entry = only(header(name=b"c", prefix=prefix, at476=times, at488=times, at508=b"tar\x00"))
    assert entry.name == prefix.decode() + "/c"


def test_gnu_headers_ignore_the_prefix_field() -> None:
    entry = only(header(name=b"c", prefix=b"00000000000\x00", **GNU))
    assert entry.name == "c"


def test_gnu_headers_from_old_go_writers_use_the_prefix_when_times_do_not_parse() -> None:
    entry = only(header(name=b"c", prefix=b"old/go", **GNU))
    assert entry.name == "old/go/c"


def test_v7_headers_have_no_user_names_or_device_numbers() -> None:
    entry = only(header(magic=b"\x00" * 6, version=b"\x00\x00", uname=b"root", devmajor=b"junk"))
    assert (entry.uname, entry.devmajor) == ("", 0)


def test_an_old_regular_type_named_with_a_slash_is_a_directory_without_data() -> None:
    entries, end = read(header(name=b"dir/", typeflag=b"\x00", size=b"00000000144\x00") + END)
    assert [(entry.name, entry.type, entry.uncompressed_size) for entry in entries] == [
        ("dir/", "dir", 100)
    ]
    assert end == 3 * BLOCK  # no data block was skipped


def test_header_only_types_skip_no_data_whatever_their_size_field() -> None:
    link = header(name=b"l", typeflag=b"2", linkname=b"target", size=b"00000001750\x00")
    entries, _ = read(link + header(name=b"next") + END)
    assert [(entry.name, entry.uncompressed_offset) for entry in entries] == [
        ("l", BLOCK),
        ("next", 2 * BLOCK),
    ]


def test_a_later_pax_header_replaces_an_earlier_one() -> None:
    stream = pax((b"path", b"first")) + pax((b"comment", b"second")) + header(name=b"plain")
    entry = only(stream)
    assert entry.name == "plain"
    assert entry.xattrs == (("comment", "second"),)


def test_a_gnu_long_name_overrides_a_pax_path() -> None:
    long_name = b"L" * 150
    gnu_long = header(name=b"././@LongLink", typeflag=b"L", size=b"%011o\x00" % 151, **GNU)
    stream = gnu_long + padded(long_name + b"\x00") + pax((b"path", b"from-pax"))
    entry = only(stream + header(name=b"short", **GNU))
    assert entry.name == "L" * 150


def test_an_empty_pax_value_keeps_the_header_value_but_is_recorded() -> None:
    entry = only(pax((b"path", b""), (b"uname", b"")) + header(name=b"n", uname=b"root"))
    assert (entry.name, entry.uname) == ("n", "root")
    assert entry.xattrs == (("path", ""), ("uname", ""))


def test_pax_records_override_ids_names_and_size() -> None:
    records = pax((b"uid", b"3000000"), (b"gid", b"-1"), (b"gname", b"staff"), (b"size", b"5"))
    entry = only(records + header(name=b"n") + padded(b"12345"))
    assert (entry.uid, entry.gid, entry.gname, entry.uncompressed_size) == (
        3000000,
        2**32 - 1,
        "staff",
        5,
    )


def test_xattrs_hold_every_pax_record_sorted_by_key_bytes() -> None:
    records = pax((b"b", b"2"), (b"SCHILY.xattr.user.x", b"\x01\x00"), (b"B", b"1"), (b"a", b"3"))
    entry = only(records + header())
    assert entry.xattrs == (("B", "1"), ("SCHILY.xattr.user.x", "\x01\x00"), ("a", "3"), ("b", "2"))


@pytest.mark.parametrize(
    ("mtime", "text"),
    [
        (b"1700000000.1234567", "2023-11-14T22:13:20.1234567Z"),
        (b"1700000000.123456789999", "2023-11-14T22:13:20.123456789Z"),
        (b"1700000000.500", "2023-11-14T22:13:20.5Z"),
        (b"1700000000.", "2023-11-14T22:13:20Z"),
        (b"-1.5", "1969-12-31T23:59:58.5Z"),
        (b"-0.25", "1969-12-31T23:59:59.75Z"),
        (b"+86400", "1970-01-02T00:00:00Z"),
    ],
)
def test_pax_mtimes_render_like_go_marshal_text(mtime: bytes, text: str) -> None:
    assert only(pax((b"mtime", mtime)) + header()).mod_time == text


@pytest.mark.parametrize("mtime", [b".5", b"1e9", b"1_000", b" 1", b"1.5x"])
def test_malformed_pax_mtimes_are_corrupt(mtime: bytes) -> None:
    with pytest.raises(CorruptLayer, match="malformed number"):
        read(pax((b"mtime", mtime)) + header() + END)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (951782400, "2000-02-29T00:00:00Z"),
        (-62167219200, "0000-01-01T00:00:00Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
        (253402300800, ""),
        (-62167219201, ""),
    ],
)
def test_times_render_in_utc_with_years_0_to_9999(seconds: int, text: str) -> None:
    assert go_time_text(seconds) == text


def test_a_nul_in_a_pax_path_is_corrupt() -> None:
    with pytest.raises(CorruptLayer, match="NUL"):
        read(pax((b"path", b"a\x00b")) + header() + END)


def test_a_hardlink_keeps_its_target_as_written() -> None:
    entry = only(header(name=b"h", typeflag=b"1", linkname=b"./dir//target"))
    assert (entry.type, entry.linkname) == ("hardlink", "./dir//target")


def test_devices_keep_their_numbers() -> None:
    entry = only(header(typeflag=b"4", devmajor=b"0000010\x00", devminor=b"0000002\x00"))
    assert (entry.type, entry.devmajor, entry.devminor) == ("block", 8, 2)


def test_without_zero_blocks_the_archive_ends_at_eof() -> None:
    stream = header(size=b"00000000003\x00") + padded(b"abc")
    assert read(stream)[1] == len(stream)


def test_one_zero_block_then_eof_ends_after_that_block() -> None:
    stream = header() + bytes(BLOCK)
    assert read(stream)[1] == 2 * BLOCK


def test_bytes_after_two_zero_blocks_are_not_read() -> None:
    entries, end = read(header() + END + b"not a header" * 100)
    assert (len(entries), end) == (1, 3 * BLOCK)


def test_eof_inside_the_padding_after_data_ends_the_archive() -> None:
    stream = header(size=b"00000000003\x00") + b"abc" + bytes(10)
    assert read(stream)[1] == len(stream)


def test_names_keep_bytes_that_are_not_utf8() -> None:
    entry = only(header(name=b"caf\xe9"))
    assert entry.name.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_a_plain_header_gives_every_field_as_written() -> None:
    fields = {"uid": b"0001750\x00", "gid": b"0000144\x00", "uname": b"app", "gname": b"staff"}
    fields["mtime"] = b"14524770400\x00"  # 1700000000
    for kind in (USTAR, GNU):
        entry = only(header(name=b"usr/bin/tool", mode=b"0000755\x00", **fields, **kind))
        assert entry == FileMetadata(
            name="usr/bin/tool",
            type="reg",
            uncompressed_offset=BLOCK,
            uncompressed_size=0,
            mode=0o755,
            uid=1000,
            gid=100,
            uname="app",
            gname="staff",
            mod_time="2023-11-14T22:13:20Z",
        )


def mixed_archive() -> bytes:
    """Plain headers (read in one loop) between every kind of header that is not."""
    gnu_long = header(name=b"././@LongLink", typeflag=b"L", size=b"%011o\x00" % 151, **GNU)
    star_times = b"00000000000\x00"
    parts = [
        header(name=b"a", size=b"00000001750\x00") + padded(b"x" * 1000),
        header(name=b"b/", typeflag=b"5", **GNU),
        pax((b"path", b"from-pax"), (b"comment", b"kept")) + header(name=b"p"),
        header(name=b"c", typeflag=b"2", linkname=b"a", size=b"00000001750\x00"),
        gnu_long + padded(b"L" * 150 + b"\x00") + header(name=b"short", **GNU),
        header(name=b"d", prefix=b"deep/er"),
        header(name=b"e", prefix=b"old/go", **GNU),
        header(name=b"f", prefix=b"star", at476=star_times, at488=star_times, at508=b"tar\x00"),
        header(magic=b"\x00" * 6, version=b"\x00\x00", name=b"v7", uname=b"root"),
        header(name=b"g", typeflag=b"\x00", size=b"00000000003\x00") + padded(b"abc"),
        header(name=b"h", typeflag=b"3", devmajor=b"0000001\x00", devminor=b"0000003\x00"),
        header(checksum="signed", name="é".encode()),
        header(name=b"i", mode=b"  755 \x00 ", size=b"\x80" + bytes(7) + (600).to_bytes(4, "big"))
        + padded(bytes(600)),
    ]
    plain_run = b"".join(header(name=b"run-%d" % n, size=b"00000000012\x00") + padded(b"0123456789")
                         for n in range(5))  # fmt: skip
    return plain_run.join(parts) + plain_run + END


@pytest.mark.parametrize("piece", [1, 7, 511, 512, 513, 1536, 5000, 1 << 20])
def test_headers_read_the_same_in_pieces_of_any_size(piece: int) -> None:
    stream = mixed_archive()
    whole, end = read(stream)
    reader = TarReader()
    for start in range(0, len(stream), piece):  # pieces under 512 bytes hold no whole header
        reader.feed(memoryview(stream)[start : start + piece], start)
    assert reader.close(len(stream)) == end == len(stream)
    assert reader.entries == whole
    names = [entry.name for entry in whole]
    assert names[:7] == ["a", "run-0", "run-1", "run-2", "run-3", "run-4", "b/"]
    assert {"from-pax", "L" * 150, "deep/er/d", "old/go/e", "star/f", "v7", "g", "h", "é", "i"} <= {
        entry.name for entry in whole
    }
