"""Reading zTOCs back: malformed bytes and inconsistent spans end in ZtocFormatError."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import struct
from pathlib import Path

import pytest
from soci_indexer.engine.readback import spans
from soci_indexer.engine.ztoc import Ztoc, parse, parse_gzip_zinfo, serialize
from soci_indexer.errors import ZtocFormatError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "ztocs"
GZIP_ZTOC = (GOLDEN / "small-pax.l6.tar.gz.span32768.ztoc").read_bytes()
TAR_ZTOC = (GOLDEN / "small-pax.tar.span32768.ztoc").read_bytes()


def with_compression(ztoc: Ztoc, **changes: object) -> Ztoc:
    return dataclasses.replace(ztoc, compression=dataclasses.replace(ztoc.compression, **changes))


@pytest.mark.parametrize("cut", [0, 3, 4, 100, len(GZIP_ZTOC) // 2])
def test_a_truncated_ztoc_is_refused(cut: int) -> None:
    with pytest.raises(ZtocFormatError):
        parse(GZIP_ZTOC[:cut])


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_refused_or_decoded_never_crash(seed: int) -> None:
    data = random.Random(seed).randbytes(random.Random(seed).randrange(1, 400))
    with contextlib.suppress(ZtocFormatError):
        parse(data)


def test_an_unknown_compression_algorithm_is_refused() -> None:
    unknown = with_compression(parse(TAR_ZTOC), algorithm=7)
    with pytest.raises(ZtocFormatError, match="compression algorithm 7"):
        parse(serialize(unknown))


def test_a_max_span_id_that_disagrees_with_the_checkpoints_is_refused() -> None:
    ztoc = parse(GZIP_ZTOC)
    with pytest.raises(ZtocFormatError, match="max_span_id"):
        spans(with_compression(ztoc, max_span_id=ztoc.compression.max_span_id + 1))


def test_a_missing_span_digest_is_refused() -> None:
    ztoc = parse(GZIP_ZTOC)
    with pytest.raises(ZtocFormatError, match="span digests"):
        spans(with_compression(ztoc, span_digests=ztoc.compression.span_digests[:-1]))


def test_a_legacy_checkpoint_blob_without_checkpoint_0_is_refused() -> None:
    ztoc = parse(GZIP_ZTOC)
    blob = ztoc.compression.checkpoints
    count = struct.unpack_from("<i", blob)[0]
    legacy = struct.pack("<i", count) + blob[4:-32785]
    with pytest.raises(ZtocFormatError, match="legacy"):
        parse_gzip_zinfo(legacy)


def test_a_last_span_with_no_uncompressed_bytes_is_refused() -> None:
    ztoc = parse(GZIP_ZTOC)
    _, checkpoints = parse_gzip_zinfo(ztoc.compression.checkpoints)
    empty_last = dataclasses.replace(
        ztoc, uncompressed_archive_size=checkpoints[-1].uncompressed_offset
    )
    with pytest.raises(ZtocFormatError, match="empty or reversed"):
        spans(empty_last)


def test_tar_checkpoint_info_must_match_the_layer_size() -> None:
    ztoc = parse(TAR_ZTOC)
    with pytest.raises(ZtocFormatError, match="does not fit"):
        spans(dataclasses.replace(ztoc, compressed_archive_size=ztoc.compressed_archive_size + 1))


def test_uncompressed_spans_are_fixed_ranges_ending_at_the_blob_size() -> None:
    ztoc = parse(TAR_ZTOC)
    size, span = ztoc.compressed_archive_size, 32768
    expected = [(start, min(start + span, size)) for start in range(0, size, span)]
    assert [(s.compressed_start, s.compressed_end) for s in spans(ztoc)] == expected
    assert [(s.uncompressed_start, s.uncompressed_end) for s in spans(ztoc)] == expected
