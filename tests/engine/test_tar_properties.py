"""Generated tar trees: the zTOC says what Python's tarfile says, and files read back intact.

tarfile is the independent oracle where it agrees with Go (it strips the
trailing slash of directory names, Go does not).
"""

from __future__ import annotations

import io
import random
import tarfile
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layerkit import RangeFetcher, gzip_layer
from soci_indexer.engine.build import build_ztoc
from soci_indexer.engine.readback import read_entry
from soci_indexer.engine.ztoc import FileMetadata

SPAN = 4096
KINDS = {
    "reg": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
PAX_KEYS = ["SCHILY.xattr.user.a", "SCHILY.xattr.security.capability", "comment", "LIB.x"]

components = st.text(alphabet="abcxyz019-_.éжΩ中", min_size=1, max_size=40).filter(
    lambda part: part not in (".", "..")
)
names = st.lists(components, min_size=1, max_size=8).map("/".join)
sizes = st.integers(0, 20_000)  # spans are 4 KiB: files from none to several
contents = st.one_of(
    st.binary(max_size=50),
    st.builds(lambda seed, size: random.Random(seed).randbytes(size), st.integers(0), sizes),
    st.builds(lambda word, size: (word * size)[:size], st.binary(min_size=1, max_size=40), sizes),
)


@st.composite
def archives(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes]]:
    """A tar (PAX or GNU format) of random entries, and the content of each regular file."""
    tar_format = draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))
    big = 2**32 - 1 if tar_format == tarfile.GNU_FORMAT else 2**31
    members = draw(st.lists(names, min_size=1, max_size=10, unique=True))
    out = io.BytesIO()
    written: dict[str, bytes] = {}
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        for name in members:
            kind = draw(st.sampled_from(sorted(KINDS)))
            info = tarfile.TarInfo(name)
            info.type = KINDS[kind]
            info.mode = draw(st.integers(0, 0o7777))
            info.uid = draw(st.integers(0, big))
            info.gid = draw(st.integers(0, big))
            info.uname = draw(st.text(alphabet="abcr0-", max_size=12))
            info.gname = draw(st.text(alphabet="abcr0-", max_size=12))
            info.mtime = draw(st.integers(0, 253402300799))
            if kind in ("symlink", "hardlink"):
                info.linkname = draw(st.one_of(names, st.sampled_from(members)))
            if kind in ("char", "block"):
                info.devmajor = draw(st.integers(0, 4095))
                info.devminor = draw(st.integers(0, 4095))
            if tar_format == tarfile.PAX_FORMAT:
                info.pax_headers = draw(
                    st.dictionaries(st.sampled_from(PAX_KEYS), st.text(max_size=20), max_size=3)
                )
            data = draw(contents) if kind == "reg" else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            if kind == "reg":
                written[name] = data
    return out.getvalue(), written


def expected_entry(member: tarfile.TarInfo) -> FileMetadata:
    kind = next(name for name, flag in KINDS.items() if flag == member.type)
    seconds = int(member.mtime)
    return FileMetadata(
        name=member.name + "/" if member.isdir() else member.name,
        type=kind,
        uncompressed_offset=member.offset_data,
        uncompressed_size=member.size,
        linkname=member.linkname,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        uname=member.uname,
        gname=member.gname,
        mod_time=datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        devmajor=member.devmajor,
        devminor=member.devminor,
        xattrs=tuple(sorted(member.pax_headers.items(), key=lambda item: item[0].encode())),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archive=archives(), compressed=st.booleans())
def test_toc_entries_are_what_tarfile_reads(
    archive: tuple[bytes, dict[str, bytes]], compressed: bool
) -> None:
    tar_bytes, _ = archive
    layer = gzip_layer(tar_bytes, 1) if compressed else tar_bytes
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        expected = tuple(expected_entry(member) for member in tar.getmembers())
    assert ztoc.metadata == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archive=archives(), compressed=st.booleans())
def test_files_read_back_through_checkpoints_are_what_was_written(
    archive: tuple[bytes, dict[str, bytes]], compressed: bool
) -> None:
    tar_bytes, written = archive
    layer = gzip_layer(tar_bytes, 1) if compressed else tar_bytes
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    fetch = RangeFetcher(layer)
    read = {
        entry.name: read_entry(ztoc, entry, fetch) for entry in ztoc.metadata if entry.type == "reg"
    }
    assert read == written
