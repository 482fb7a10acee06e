"""Layers made by independent tools, and ways to read them back through a zTOC only.

Everything expected here comes from Python's tarfile/gzip/zlib, GNU tar and
pigz, never from the engine under test.
"""

from __future__ import annotations

import gzip
import io
import itertools
import random
import subprocess
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from soci_indexer.engine.readback import Span, read_entry, spans
from soci_indexer.engine.ztoc import FileMetadata, Ztoc

MTIME = 1_700_000_000


def text_bytes(rng: random.Random, size: int) -> bytes:
    """Compressible, text-like bytes."""
    words = [rng.randbytes(rng.randrange(1, 6)).hex().encode() for _ in range(200)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=12)) + b"\n"
    return bytes(out[:size])


def sample_files(seed: int = 7) -> dict[str, bytes]:
    """A small tree: empty, tiny, span-sized and multi-span files, text and random."""
    rng = random.Random(seed)
    return {
        "etc/hostname": b"layer\n",
        "etc/empty": b"",
        "usr/share/doc/notes.txt": text_bytes(rng, 150_000),
        "usr/lib/libblob.so": rng.randbytes(90_000),
        "usr/bin/" + "long-directory-" * 8 + "/tool": text_bytes(rng, 3_000),
        "opt/data/mixed.bin": text_bytes(rng, 40_000) + rng.randbytes(40_000),
        "opt/data/tiny": b"x",
        "var/lib/ünïcode-файл.txt": "grüße\n".encode() * 100,
        "srv/last.txt": text_bytes(rng, 5_000),
    }


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "usr/bin/link-to-notes").symlink_to("../share/doc/notes.txt")


def tarfile_layer(files: dict[str, bytes], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar written by Python's tarfile, with directories, links and a device."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        directories = sorted({str(Path(name).parent) for name in files})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, MTIME
            tar.addfile(info, io.BytesIO(content))
        first = next(iter(files))
        link = tarfile.TarInfo("hardlink-to-first")
        link.type, link.linkname, link.mtime = tarfile.LNKTYPE, first, MTIME
        tar.addfile(link)
        device = tarfile.TarInfo("dev/null")
        device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(device)
    return out.getvalue()


def gnu_tar_layer(root: Path, tar_format: str = "gnu") -> bytes:
    """A tar written by GNU tar (``gnu`` or ``posix`` format) of the tree under ``root``."""
    command = [
        "tar",
        f"--format={tar_format}",
        "--sort=name",
        f"--mtime=@{MTIME}",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "-C",
        str(root),
        "-cf",
        "-",
        ".",
    ]
    if tar_format == "posix":
        command[1:1] = ["--pax-option=delete=atime,delete=ctime"]
    return subprocess.run(command, check=True, capture_output=True).stdout


def gzip_layer(data: bytes, level: int = 6) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def pigz_layer(data: bytes, *options: str) -> bytes:
    return subprocess.run(
        ["pigz", "-c", *options], input=data, check=True, capture_output=True
    ).stdout


def gzip_members(data: bytes, cuts: list[int]) -> bytes:
    """``data`` split at ``cuts`` and each piece gzipped: one stream of concatenated members."""
    bounds = [0, *cuts, len(data)]
    return b"".join(
        gzip.compress(data[start:end], mtime=0) for start, end in itertools.pairwise(bounds)
    )


def full_flush_layer(data: bytes, every: int = 4096) -> bytes:
    """gzip with a full flush every ``every`` bytes: many byte-aligned empty blocks."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    pieces = [
        compressor.compress(data[start : start + every]) + compressor.flush(zlib.Z_FULL_FLUSH)
        for start in range(0, len(data), every)
    ]
    return b"".join(pieces) + compressor.flush()


@dataclass
class RangeFetcher:
    """``fetch(start, end)`` over a blob, remembering every range asked for."""

    blob: bytes
    requests: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, start: int, end: int) -> bytes:
        self.requests.append((start, end))
        return self.blob[start:end]


@dataclass(frozen=True)
class TarfileView:
    """What Python's tarfile says about a regular file: the oracle for offsets and content."""

    offset: int
    size: int
    content: bytes


def tarfile_regular_files(tar_bytes: bytes) -> dict[str, TarfileView]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        views = {}
        for member in tar.getmembers():
            if member.isreg():
                extracted = tar.extractfile(member)
                assert extracted is not None
                views[member.name] = TarfileView(member.offset_data, member.size, extracted.read())
        return views


def regular_entries(ztoc: Ztoc) -> Iterator[FileMetadata]:
    return (entry for entry in ztoc.metadata if entry.type == "reg")


def spans_of(ztoc: Ztoc, entry: FileMetadata) -> list[Span]:
    """The spans holding bytes of ``entry``, by the zTOC's own ranges."""
    start = entry.uncompressed_offset
    end = start + entry.uncompressed_size
    return [
        span
        for span in spans(ztoc)
        if span.uncompressed_start < end and start < span.uncompressed_end
    ]


def read_every_file(ztoc: Ztoc, blob: bytes) -> dict[str, bytes]:
    fetch = RangeFetcher(blob)
    return {entry.name: read_entry(ztoc, entry, fetch) for entry in regular_entries(ztoc)}


LayerMaker = Callable[[bytes], bytes]
