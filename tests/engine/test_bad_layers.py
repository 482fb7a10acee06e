"""Layers that cannot be indexed end in a typed error naming the reason and the offset."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from layerkit import MTIME, gzip_layer, sample_files, tarfile_layer
from soci_indexer.engine.build import build_ztoc
from soci_indexer.errors import CorruptLayer, LayerError, UnsupportedLayer

TAR = tarfile_layer(sample_files())
GZIP = gzip_layer(TAR)


def tar_of(*members: tuple[tarfile.TarInfo, bytes], **options: object) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", **options) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def member(name: str, data: bytes = b"", **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), MTIME
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def with_header_field(
    tar: bytes, header: int, field: int, value: bytes, *, fix_checksum: bool = True
) -> bytes:
    """``tar`` with ``value`` written at ``field`` of the header at ``header``."""
    out = bytearray(tar)
    out[header + field : header + field + len(value)] = value
    if fix_checksum:
        block = out[header : header + 512]
        block[148:156] = b" " * 8
        out[header + 148 : header + 156] = b"%06o\x00 " % sum(block)
    return bytes(out)


def sparse_tar(tmp_path: Path, tar_format: str) -> bytes:
    sparse = tmp_path / "sparse.img"
    with sparse.open("wb") as out:
        out.truncate(4 * 1024 * 1024)
        out.seek(2 * 1024 * 1024)
        out.write(b"data")
    (tmp_path / "plain.txt").write_bytes(b"plain\n")
    return subprocess.run(
        [
            "tar",
            f"--format={tar_format}",
            "--sparse",
            "-C",
            str(tmp_path),
            "-cf",
            "-",
            "plain.txt",
            "sparse.img",
        ],
        check=True,
        capture_output=True,
    ).stdout


Case = tuple[type[LayerError], str, int | None]


def build(layer: bytes, compression: str = "auto") -> None:
    build_ztoc(io.BytesIO(layer), span_size=64 * 1024, compression=compression)  # type: ignore[arg-type]


def assert_fails(layer: bytes, expected: Case, compression: str = "auto") -> None:
    kind, reason, offset = expected
    with pytest.raises(LayerError) as caught:
        build(layer, compression)
    assert type(caught.value) is kind
    assert reason in caught.value.reason
    assert caught.value.offset == offset


def test_a_truncated_gzip_stream_is_corrupt() -> None:
    assert_fails(GZIP[: len(GZIP) // 2], (CorruptLayer, "truncated gzip stream", len(GZIP) // 2))


def test_a_gzip_stream_missing_its_trailer_is_corrupt() -> None:
    assert_fails(GZIP[:-4], (CorruptLayer, "truncated gzip stream", len(GZIP) - 4))


def test_damaged_deflate_data_is_corrupt() -> None:
    damaged = bytearray(GZIP)
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)
    with pytest.raises(CorruptLayer, match="corrupt gzip stream"):
        build(bytes(damaged))


def test_a_wrong_crc_is_corrupt() -> None:
    damaged = bytearray(GZIP)
    damaged[-8] ^= 0x01  # the trailer: CRC-32, then the length
    assert_fails(bytes(damaged), (CorruptLayer, "incorrect data check", len(GZIP) - 4))


@pytest.mark.parametrize(
    ("trailing", "what"), [(bytes(512), "zero padding"), (b"garbage!", "garbage")]
)
def test_bytes_after_the_gzip_stream_are_corrupt(trailing: bytes, what: str) -> None:
    assert_fails(
        GZIP + trailing,
        (CorruptLayer, "bytes after the end of the gzip stream are not a gzip member", len(GZIP)),
    )


@pytest.mark.parametrize(
    ("magic", "name"),
    [(b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh91AY&SY", "bzip2"), (b"\xfd7zXZ\x00\x00", "xz")],
)
def test_other_compressions_are_unsupported(magic: bytes, name: str) -> None:
    assert_fails(magic + bytes(600), (UnsupportedLayer, f"{name}-compressed", 0))


def test_a_global_pax_header_is_unsupported() -> None:
    layer = tar_of(member("a.txt", b"x"), format=tarfile.PAX_FORMAT, pax_headers={"comment": "g"})
    assert_fails(layer, (UnsupportedLayer, "global PAX header", 0))


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_gnu_sparse_files_are_unsupported(tmp_path: Path, tar_format: str) -> None:
    layer = sparse_tar(tmp_path, tar_format)
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        sparse = tar.getmember("sparse.img")
    with pytest.raises(UnsupportedLayer, match="sparse") as caught:
        build(layer)
    assert caught.value.offset is not None
    assert sparse.offset <= caught.value.offset < sparse.offset_data  # one of the entry's headers


@pytest.mark.parametrize(("typeflag", "what"), [(b"7", "contiguous file"), (b"Z", "unknown")])
def test_entry_types_soci_does_not_know_are_unsupported(typeflag: bytes, what: str) -> None:
    second = 1024  # a.txt's header and its one block of data come first
    layer = tar_of(member("a.txt", b"x"), member("b.txt", b"y"), format=tarfile.USTAR_FORMAT)
    layer = with_header_field(layer, second, 156, typeflag)
    assert_fails(layer, (UnsupportedLayer, what, second))


def test_a_header_with_a_wrong_checksum_is_corrupt() -> None:
    layer = with_header_field(TAR, 0, 0, b"X", fix_checksum=False)
    assert_fails(layer, (CorruptLayer, "checksum", 0), compression="uncompressed")


def test_a_header_with_a_non_octal_size_is_corrupt() -> None:
    layer = with_header_field(TAR, 0, 124, b"00000000x12\x00")
    assert_fails(layer, (CorruptLayer, "malformed number", 0))


def test_a_malformed_pax_record_is_corrupt() -> None:
    layer = tar_of(
        member("a.txt", b"x", pax_headers={"comment": "hello"}), format=tarfile.PAX_FORMAT
    )
    record_start = 512
    broken = layer[record_start:].replace(b" comment=", b"_comment=", 1)
    assert_fails(layer[:record_start] + broken, (CorruptLayer, "PAX record", record_start))


def test_an_extended_header_over_one_mebibyte_is_unsupported() -> None:
    huge = {"comment": "x" * (1024 * 1024)}
    layer = tar_of(member("a.txt", b"x", pax_headers=huge), format=tarfile.PAX_FORMAT)
    assert_fails(layer, (UnsupportedLayer, "over the 1 MiB limit", 0))


def test_a_tar_cut_inside_file_data_is_corrupt() -> None:
    with tarfile.open(fileobj=io.BytesIO(TAR)) as tar:
        largest = max(tar.getmembers(), key=lambda info: info.size)
    cut = largest.offset_data + largest.size // 2
    assert_fails(TAR[:cut], (CorruptLayer, "inside an entry's data", cut))


def test_a_tar_cut_inside_a_header_is_corrupt() -> None:
    assert_fails(TAR[:700], (CorruptLayer, "inside a header", 700), compression="uncompressed")


def test_a_zero_block_followed_by_a_header_is_corrupt() -> None:
    layer = bytes(512) + TAR
    assert_fails(layer, (CorruptLayer, "zero block is followed by a non-zero block", 512))


def test_an_empty_layer_is_corrupt() -> None:
    assert_fails(b"", (CorruptLayer, "empty", 0))


def test_a_gzip_stream_of_nothing_is_corrupt() -> None:
    assert_fails(gzip_layer(b""), (CorruptLayer, "no tar data", 0))


BAD_LAYERS: dict[str, Callable[[], bytes]] = {
    "truncated-gzip": lambda: GZIP[:-100],
    "trailing-garbage": lambda: GZIP + b"junk",
    "zstd": lambda: b"\x28\xb5\x2f\xfd" + bytes(100),
    "global-pax": lambda: tar_of(
        member("a", b"x"), format=tarfile.PAX_FORMAT, pax_headers={"k": "v"}
    ),
    "bad-checksum": lambda: with_header_field(TAR, 0, 0, b"X", fix_checksum=False),
    "non-octal-size": lambda: with_header_field(TAR, 0, 124, b"00000000x12\x00"),
    "oversized-pax": lambda: tar_of(
        member("a", b"x", pax_headers={"comment": "x" * (1024 * 1024)}), format=tarfile.PAX_FORMAT
    ),
    "cut-inside-data": lambda: TAR[: len(TAR) // 2],
    "empty": lambda: b"",
}


@pytest.mark.parametrize("name", sorted(BAD_LAYERS))
def test_the_cli_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, name: str) -> None:
    layer = tmp_path / "layer"
    layer.write_bytes(BAD_LAYERS[name]())
    out = tmp_path / "out.ztoc"
    result = subprocess.run(
        [sys.executable, "-m", "soci_indexer", "ztoc", str(layer), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("soci-indexer: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [layer]
