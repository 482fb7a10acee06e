"""Peak memory against layer size: 0.5, 1, 2 and 5 GB layers, streamed, never stored.

Each layer is generated on the fly as concatenated gzip members (a tar header
member, then a 4 MiB file member compressed once and repeated), fed straight
into the engine in a child process whose peak RSS is read back. The zTOC's own
size grows with the layer (one 32 KiB window per span), and a finished build
holds it twice: the checkpoint blob in the decoded model and the serialized
bytes. Everything else must stay flat, which the last but one column shows.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import random
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

FILE_SIZE = 4 * 1024 * 1024
GIB = 1024**3


def _file_member() -> bytes:
    """One 4 MiB file body: half text-like, half random, as a gzip member."""
    rng = random.Random(1234)
    words = [rng.randbytes(rng.randrange(2, 9)).hex().encode() for _ in range(512)]
    text = bytearray()
    while len(text) < FILE_SIZE // 2:
        text += b" ".join(rng.choices(words, k=16)) + b"\n"
    body = bytes(text[: FILE_SIZE // 2]) + rng.randbytes(FILE_SIZE // 2)
    return gzip.compress(body, compresslevel=1, mtime=0)


def _header(number: int) -> bytes:
    name = f"data/blob-{number:07d}.bin".encode()
    header = bytearray(512)
    header[0 : len(name)] = name
    header[100:108] = b"0000644\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = f"{FILE_SIZE:011o}\0".encode()
    header[136:148] = b"14524761000\0"
    header[156:157] = b"0"
    header[257:265] = b"ustar\x0000"
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    return gzip.compress(bytes(header), compresslevel=1, mtime=0)


def layer_chunks(total_bytes: int) -> Iterator[bytes]:
    """A gzip tar layer of ``total_bytes`` uncompressed, generated as it is read."""
    member = _file_member()
    for number in range(max(1, total_bytes // FILE_SIZE)):
        yield _header(number)
        yield member
    yield gzip.compress(bytes(1024), mtime=0)


def _peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across
    exec, so a child spawned by a big parent would report the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


Measurement = tuple[float, int, int, int, int]  # seconds, peak KiB, zTOC, blob, tar bytes


def _child(total_bytes: int, queue: multiprocessing.Queue[Measurement]) -> None:
    from soci_indexer.engine.build import build_ztoc

    started = time.perf_counter()
    build = build_ztoc(layer_chunks(total_bytes), compression="gzip")
    seconds = time.perf_counter() - started
    peak_kib = _peak_rss_kib()
    queue.put(
        (seconds, peak_kib, len(build.data), build.layer_size, build.ztoc.uncompressed_archive_size)
    )


def measure(total_bytes: int) -> Measurement:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Measurement] = context.Queue()
    process = context.Process(target=_child, args=(total_bytes, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="0.5,1,2,5", help="GiB of uncompressed tar, comma separated"
    )
    args = parser.parse_args(argv)
    sizes = [float(text) for text in args.sizes.split(",")]
    print("\n== peak RSS against layer size (streamed, nothing stored) ==")
    print(
        f"{'layer (tar)':>12} {'compressed':>11} {'zTOC':>9} {'peak RSS':>9} "
        f"{'RSS - 2 zTOC':>13} {'MB/s (tar)':>11}"
    )
    for size in sizes:
        seconds, peak_kib, ztoc_size, compressed, tar_size = measure(int(size * GIB))
        peak = peak_kib * 1024
        print(
            f"{tar_size / GIB:>10.2f} G {compressed / GIB:>9.2f} G {ztoc_size / 2**20:>7.1f} M "
            f"{peak / 2**20:>7.1f} M {(peak - 2 * ztoc_size) / 2**20:>11.1f} M "
            f"{tar_size / seconds / 1e6:>11.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
