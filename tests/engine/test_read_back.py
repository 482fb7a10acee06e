"""Files read back through the zTOC alone equal what the tar holds, for layers from many tools."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from layerkit import (
    RangeFetcher,
    full_flush_layer,
    gnu_tar_layer,
    gzip_layer,
    gzip_members,
    pigz_layer,
    read_every_file,
    regular_entries,
    sample_files,
    spans_of,
    tarfile_layer,
    tarfile_regular_files,
    write_tree,
)
from soci_indexer.engine.build import build_ztoc
from soci_indexer.engine.readback import check_gzip_header, read_entry
from soci_indexer.engine.ztoc import Compression
from soci_indexer.errors import CorruptLayer, ZtocFormatError

SPAN = 64 * 1024
FILES = sample_files()

TarMaker = Callable[[Path], bytes]
TAR_MAKERS: dict[str, TarMaker] = {
    "tarfile-pax": lambda root: tarfile_layer(FILES, tarfile.PAX_FORMAT),
    "tarfile-gnu": lambda root: tarfile_layer(FILES, tarfile.GNU_FORMAT),
    "tarfile-ustar": lambda root: tarfile_layer(FILES, tarfile.USTAR_FORMAT),
    "gnu-tar-gnu": lambda root: gnu_tar_layer(root, "gnu"),
    "gnu-tar-posix": lambda root: gnu_tar_layer(root, "posix"),
}
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "uncompressed": lambda tar: tar,
    "gzip-level-1": lambda tar: gzip_layer(tar, 1),
    "gzip-level-6": lambda tar: gzip_layer(tar, 6),
    "gzip-stored": lambda tar: gzip_layer(tar, 0),
    "pigz": lambda tar: pigz_layer(tar),
    "pigz-independent-blocks": lambda tar: pigz_layer(tar, "-i", "-b", "32"),
    "concatenated-members": lambda tar: gzip_members(tar, [700, 70_001, len(tar) - 1030]),
    "full-flush-every-4k": full_flush_layer,
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    write_tree(root, FILES)
    return root


@pytest.fixture(params=sorted(TAR_MAKERS))
def tar_bytes(request: pytest.FixtureRequest, tree: Path) -> bytes:
    return TAR_MAKERS[request.param](tree)


@pytest.fixture(params=sorted(COMPRESSORS))
def layer(request: pytest.FixtureRequest, tar_bytes: bytes) -> bytes:
    return COMPRESSORS[request.param](tar_bytes)


def test_every_regular_file_reads_back_through_its_spans(tar_bytes: bytes, layer: bytes) -> None:
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    expected = {name: view.content for name, view in tarfile_regular_files(tar_bytes).items()}
    assert read_every_file(ztoc, layer) == expected


def test_entry_offsets_and_sizes_are_where_python_tarfile_finds_the_data(
    tar_bytes: bytes, layer: bytes
) -> None:
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    found = {
        entry.name: (entry.uncompressed_offset, entry.uncompressed_size)
        for entry in regular_entries(ztoc)
    }
    expected = {
        name: (view.offset, view.size) for name, view in tarfile_regular_files(tar_bytes).items()
    }
    assert found == expected


def test_reading_a_file_fetches_only_the_spans_that_hold_it(tar_bytes: bytes, layer: bytes) -> None:
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    for entry in regular_entries(ztoc):
        fetch = RangeFetcher(layer)
        read_entry(ztoc, entry, fetch)
        wanted = [(span.compressed_start, span.compressed_end) for span in spans_of(ztoc, entry)]
        assert fetch.requests == (wanted if entry.uncompressed_size else [])


def test_layers_span_several_spans(tar_bytes: bytes, layer: bytes) -> None:
    """Guards the other tests: with one span they would prove much less."""
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    assert ztoc.compression.max_span_id >= 2


@pytest.mark.parametrize("compressor", ["gzip-level-6", "concatenated-members"])
def test_bytes_before_the_first_span_parse_as_a_gzip_header(tree: Path, compressor: str) -> None:
    layer = COMPRESSORS[compressor](TAR_MAKERS["tarfile-pax"](tree))
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    assert ztoc.compression.algorithm is Compression.GZIP
    check_gzip_header(ztoc, RangeFetcher(layer))


def test_a_gzip_header_with_a_longer_name_field_is_refused(tree: Path) -> None:
    layer = gzip_layer(TAR_MAKERS["tarfile-pax"](tree))
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    flagged = layer[:3] + bytes([layer[3] | 0x08]) + layer[4:]  # FNAME set: the header goes on
    with pytest.raises(CorruptLayer, match="gzip header"):
        check_gzip_header(ztoc, RangeFetcher(flagged))


@pytest.mark.parametrize("compressor", ["uncompressed", "gzip-level-6"])
def test_a_span_whose_bytes_changed_is_refused(tree: Path, compressor: str) -> None:
    layer = COMPRESSORS[compressor](TAR_MAKERS["tarfile-pax"](tree))
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    entry = max(regular_entries(ztoc), key=lambda entry: entry.uncompressed_size)
    span = spans_of(ztoc, entry)[0]
    tampered = bytearray(layer)
    tampered[span.compressed_end - 1] ^= 0x01
    with pytest.raises(CorruptLayer, match="digest"):
        read_entry(ztoc, entry, RangeFetcher(bytes(tampered)))


def test_a_fetch_that_returns_too_few_bytes_is_refused(tree: Path) -> None:
    layer = gzip_layer(TAR_MAKERS["tarfile-pax"](tree))
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    entry = max(regular_entries(ztoc), key=lambda entry: entry.uncompressed_size)
    with pytest.raises(CorruptLayer, match="fetched"):
        read_entry(ztoc, entry, lambda start, end: layer[start : end - 1])


def test_an_empty_file_is_read_without_fetching_anything(tree: Path) -> None:
    layer = TAR_MAKERS["tarfile-pax"](tree)
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    empty = next(entry for entry in regular_entries(ztoc) if not entry.uncompressed_size)
    fetch = RangeFetcher(layer)
    assert read_entry(ztoc, empty, fetch) == b""
    assert fetch.requests == []


def test_an_entry_beyond_the_spans_is_refused(tree: Path) -> None:
    layer = gzip_layer(TAR_MAKERS["tarfile-pax"](tree))
    ztoc = build_ztoc(io.BytesIO(layer), span_size=SPAN).ztoc
    entry = next(regular_entries(ztoc))._replace(
        uncompressed_offset=ztoc.uncompressed_archive_size - 10, uncompressed_size=100
    )
    with pytest.raises(ZtocFormatError, match="do not cover"):
        read_entry(ztoc, entry, RangeFetcher(layer))
