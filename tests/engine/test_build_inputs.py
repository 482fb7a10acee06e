"""What build_ztoc accepts and reports: streams, chunk iterables, progress, clean failure."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from soci_indexer import settings
from soci_indexer.engine.build import build_ztoc
from soci_indexer.errors import CorruptLayer, RegistryError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
LAYER = (GOLDEN / "layers" / "small-pax.l6.tar.gz").read_bytes()
EXPECTED = (GOLDEN / "ztocs" / "small-pax.l6.tar.gz.span32768.ztoc").read_bytes()
REFERENCE = {"span_size": 32768, "build_tool": "AWS SOCI CLI v0.2"}


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 1000, 65536])
def test_an_iterable_of_chunks_gives_the_same_ztoc_as_a_file(size: int) -> None:
    assert build_ztoc(pieces(LAYER, size), **REFERENCE).data == EXPECTED


def test_progress_reports_growing_input_counts_up_to_the_layer_size() -> None:
    seen: list[int] = []
    build_ztoc(pieces(LAYER, 8192), progress=seen.append, **REFERENCE)
    assert seen == sorted(seen)
    assert seen[-1] == len(LAYER)


def test_the_default_build_tool_is_the_packages() -> None:
    assert build_ztoc(io.BytesIO(LAYER)).ztoc.build_tool_identifier == settings.DEFAULT_BUILD_TOOL


def test_the_span_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="span size"):
        build_ztoc(io.BytesIO(LAYER), span_size=0)


def test_the_layer_digest_covers_every_byte_read() -> None:
    build = build_ztoc(pieces(LAYER, 4096), **REFERENCE)
    assert build.layer_digest == "sha256:" + hashlib.sha256(LAYER).hexdigest()
    assert build.layer_size == len(LAYER)


def test_mod_times_are_utc_whatever_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/St_Johns")
    time.tzset()
    try:
        assert build_ztoc(io.BytesIO(LAYER), **REFERENCE).data == EXPECTED
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def _engine_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("soci-")]


def test_a_failed_build_leaves_no_worker_threads_behind() -> None:
    with pytest.raises(CorruptLayer):
        build_ztoc(io.BytesIO(LAYER[:-100]))
    assert _engine_threads() == []


def test_an_error_from_the_source_reaches_the_caller_unchanged() -> None:
    def failing_body() -> Iterator[bytes]:
        yield LAYER[:20000]
        raise RegistryError("connection reset", status=None, url="https://registry/blob")

    with pytest.raises(RegistryError, match="connection reset"):
        build_ztoc(failing_body())
    assert _engine_threads() == []


def test_a_build_leaves_the_thread_switch_interval_as_it_found_it() -> None:
    import sys

    before = sys.getswitchinterval()
    build_ztoc(io.BytesIO(LAYER))
    assert sys.getswitchinterval() == before


def test_the_switch_interval_is_shortened_for_a_build_alone_and_not_beside_another() -> None:
    import sys

    before = sys.getswitchinterval()
    go = [threading.Event(), threading.Event()]
    reading = [threading.Event(), threading.Event()]

    class Held(io.RawIOBase):
        """A layer whose second read (the build is running by then) waits for ``go``."""

        def __init__(self, number: int) -> None:
            self.number, self.reads = number, 0

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            if self.reads == 2:
                reading[self.number].set()
                go[self.number].wait(10)
            return {1: LAYER[:1000], 2: LAYER[1000:]}.get(self.reads, b"")

    builds = [threading.Thread(target=build_ztoc, args=(Held(n),)) for n in (0, 1)]
    builds[0].start()
    reading[0].wait(10)
    alone = sys.getswitchinterval()
    builds[1].start()
    reading[1].wait(10)
    together = sys.getswitchinterval()
    go[1].set()
    builds[1].join(10)
    alone_again = sys.getswitchinterval()
    go[0].set()
    builds[0].join(10)
    assert (alone, together, alone_again) == pytest.approx((0.0001, before, 0.0001))
    assert sys.getswitchinterval() == before


def test_concurrent_builds_each_give_the_reference_bytes() -> None:
    results: list[bytes] = []

    def build() -> None:
        results.append(build_ztoc(io.BytesIO(LAYER), **REFERENCE).data)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [EXPECTED] * 4


def test_reading_from_a_pipe_works(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as out:
            out.write(LAYER)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb") as source:
        data = build_ztoc(source, **REFERENCE).data
    writer.join()
    assert data == EXPECTED
