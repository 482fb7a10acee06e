"""zTOCs byte-identical to the reference builder's (tests/golden, SOCI-FORMAT.md 1.2)."""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from soci_indexer.engine.build import build_ztoc
from soci_indexer.engine.tar import TarReader
from soci_indexer.engine.ztoc import (
    Compression,
    CompressionInfo,
    FileMetadata,
    Ztoc,
    parse,
    parse_gzip_zinfo,
    serialize,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES: list[dict[str, Any]] = json.loads((GOLDEN / "golden.json").read_text())["cases"]
ZTOC_FILES = sorted((GOLDEN / "ztocs").iterdir())


def _case_id(case: dict[str, Any]) -> str:
    return Path(case["ztoc"]).name


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_built_ztoc_is_byte_identical_to_the_reference(case: dict[str, Any]) -> None:
    layer = (GOLDEN / case["layer"]).read_bytes()
    build = build_ztoc(
        io.BytesIO(layer), span_size=case["span_size"], build_tool=case["build_tool"]
    )
    assert hashlib.sha256(build.data).hexdigest() == case["ztoc_sha256"]
    assert len(build.data) == case["ztoc_size"]
    assert build.data == (GOLDEN / case["ztoc"]).read_bytes()


@pytest.mark.parametrize("case", CASES[:: len(CASES) // 5], ids=_case_id)
def test_build_reports_the_layer_digest_size_and_ztoc_digest(case: dict[str, Any]) -> None:
    layer = (GOLDEN / case["layer"]).read_bytes()
    build = build_ztoc(
        io.BytesIO(layer), span_size=case["span_size"], build_tool=case["build_tool"]
    )
    assert build.layer_digest == "sha256:" + case["layer_sha256"]
    assert build.layer_size == len(layer)
    assert build.digest == "sha256:" + case["ztoc_sha256"]


def test_reference_flatbuffer_layout_check_from_the_spec() -> None:
    empty = FileMetadata(name="", type="", uncompressed_offset=0, uncompressed_size=0)
    ztoc = Ztoc(
        build_tool_identifier="AWS SOCI CLI",
        compressed_archive_size=2_000_000,
        uncompressed_archive_size=2_500_000,
        metadata=(empty, empty),
        compression=CompressionInfo(Compression.GZIP, 3, (), bytes(65536)),
    )
    data = serialize(ztoc)
    assert len(data) == 65928
    assert (
        hashlib.sha256(data).hexdigest()
        == "eba28fdf50b1b57543f57dd051b2468c1d4f57b64d2006c75aa4de1d03e6c7ec"
    )


@pytest.mark.parametrize("path", ZTOC_FILES, ids=lambda path: path.name)
def test_reference_ztocs_decode_and_reencode_to_the_same_bytes(path: Path) -> None:
    data = path.read_bytes()
    assert serialize(parse(data)) == data


@pytest.mark.parametrize("layer", ["small-pax.tar", "small-gnu.tar"])
@pytest.mark.parametrize("piece", [1, 511, 513, 4096])
def test_tar_reader_gives_the_reference_toc_whatever_the_piece_size(layer: str, piece: int) -> None:
    data = (GOLDEN / "layers" / layer).read_bytes()
    expected = parse((GOLDEN / "ztocs" / f"{layer}.span65536.ztoc").read_bytes())
    reader = TarReader()
    for start in range(0, len(data), piece):
        reader.feed(data[start : start + piece], start)
    assert reader.close(len(data)) == expected.uncompressed_archive_size
    assert tuple(reader.entries) == expected.metadata


def _gzip_members(blob: bytes) -> list[tuple[int, int]]:
    """(compressed start, uncompressed start) of each member, found with Python's zlib."""
    members, position, produced = [], 0, 0
    while position < len(blob):
        members.append((position, produced))
        inflater = zlib.decompressobj(31)
        produced += len(inflater.decompress(blob[position:]))
        position = len(blob) - len(inflater.unused_data)
    return members


def test_a_later_members_header_end_is_a_checkpoint_when_a_span_has_passed() -> None:
    layer = (GOLDEN / "layers" / "small-pax.3members.tar.gz").read_bytes()
    build = build_ztoc(io.BytesIO(layer), span_size=32768, build_tool="AWS SOCI CLI v0.2")
    _, checkpoints = parse_gzip_zinfo(build.ztoc.compression.checkpoints)
    members = _gzip_members(layer)
    assert len(members) == 3
    third_start, third_out = members[2]
    bare_header = 10
    assert [
        (point.compressed_offset, point.uncompressed_offset, point.bits) for point in checkpoints
    ] == [
        (bare_header, 0, 0),
        (third_start + bare_header, third_out, 0),
    ]
