"""Pipeline benchmark: indexing an image costs how many full pulls of it?

A generated multi-layer image (about 1 GiB of gzip layers by default) is
pushed to a docker-registry on loopback. Then, in the same run and against the
same registry, with the same client and the same number of layers at once:

- baseline: a full pull, every layer blob fetched and thrown away;
- for context: a pull that also inflates every layer (what unpacking needs at
  the least), since indexing must inflate too and inflating is CPU-bound;
- indexing: ``index_image`` end to end (fetch, inflate, tar headers, span
  digests, zTOC and manifest pushes).

Each is run ``--rounds`` times after one untimed warm-up pull; the best time
of each is compared, as ratios, never as absolute times. There is no target
here any more: on loopback the registry serves faster than zlib inflates, so
index / pull measured zlib, not the design. The network benchmark
(``network_bench.py``) holds the targets, with connections capped as a real
registry caps them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import random
import sys
import tarfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "lambda_src")]

from soci_indexer.oci.client import RegistryClient  # noqa: E402
from soci_indexer.pipeline import ImageStatus, IndexOptions, index_image  # noqa: E402
from support.images import GZIP_OCI, Blob, PlatformImage, push_image  # noqa: E402
from support.registry import LocalRegistry, installed, running_registry  # noqa: E402

MIB = 1024 * 1024
REPOSITORY = "bench/pipeline"
WORKERS = 4  # IndexOptions' default: layers at once, for the pull as for indexing


def _pools(seed: int) -> tuple[bytes, bytes]:
    """4 MiB of noise and 4 MiB of text-like bytes that file contents are cut from."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(2000)]
    text = bytearray()
    while len(text) < 4 * MIB:
        text += b" ".join(rng.choice(words) for _ in range(16)) + b"\n"
    return rng.randbytes(4 * MIB), bytes(text[: 4 * MIB])


def make_layer(size_mib: int, seed: int) -> Blob:
    """A gzip tar of ~``size_mib`` MiB: files of 16 KiB-2 MiB, 70% noise, 30% text."""
    noise, text = _pools(seed)
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        written, index = 0, 0
        while written < size_mib * MIB:
            size = rng.randint(16 * 1024, 2 * MIB)
            pool = noise if rng.random() < 0.7 else text
            start = rng.randint(0, len(pool) - size)
            info = tarfile.TarInfo(f"opt/app/{index // 64:04d}/file-{index:06d}")
            info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
            archive.addfile(info, io.BytesIO(pool[start : start + size]))
            written += size
            index += 1
    tar = buffer.getvalue()
    data = gzip.compress(tar, compresslevel=1, mtime=0)
    return Blob(data, GZIP_OCI, "sha256:" + hashlib.sha256(tar).hexdigest())


def push_bench_image(registry: LocalRegistry, total_mib: int, layers: int) -> list[Blob]:
    blobs = [make_layer(total_mib // layers, seed) for seed in range(layers)]
    push_image(
        registry.client(), REPOSITORY, "big", [PlatformImage("linux", "amd64", tuple(blobs))]
    )
    return blobs


def full_pull(client: RegistryClient, blobs: list[Blob]) -> None:
    def fetch(blob: Blob) -> int:
        return sum(len(chunk) for chunk in client.stream_blob(REPOSITORY, blob.digest))

    with ThreadPoolExecutor(WORKERS) as pool:
        fetched = sum(pool.map(fetch, blobs))
    assert fetched == sum(blob.size for blob in blobs)


def full_pull_inflated(client: RegistryClient, blobs: list[Blob]) -> None:
    def fetch_and_inflate(blob: Blob) -> int:
        inflater = zlib.decompressobj(47)
        out = 0
        for chunk in client.stream_blob(REPOSITORY, blob.digest):
            out += len(inflater.decompress(chunk))
        return out

    with ThreadPoolExecutor(WORKERS) as pool:
        sum(pool.map(fetch_and_inflate, blobs))


def index_once(client: RegistryClient, round_number: int) -> None:
    # a new build tool string per round: new zTOC digests, so every round does all the work
    options = IndexOptions(max_workers=WORKERS, build_tool=f"pipeline-bench round {round_number}")
    result = index_image(client, REPOSITORY, "big", options)
    assert result.status is ImageStatus.INDEXED, result.reason


def best_of(rounds: int, work: Callable[[int], None]) -> float:
    times = []
    for round_number in range(rounds):
        started = time.perf_counter()
        work(round_number)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="image size (default 1024)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not installed():
        print("pipeline benchmark: docker-registry is not installed; skipped")
        return 1
    with running_registry() as registry:
        started = time.perf_counter()
        blobs = push_bench_image(registry, args.size_mib, args.layers)
        size = sum(blob.size for blob in blobs)
        print(
            f"pipeline benchmark: {len(blobs)} gzip layers, {size / MIB:.0f} MiB compressed "
            f"(generated and pushed in {time.perf_counter() - started:.1f} s)"
        )
        client = registry.client()
        full_pull(client, blobs)  # warm-up: registry files in the page cache for both
        pull = best_of(args.rounds, lambda _: full_pull(client, blobs))
        inflated = best_of(args.rounds, lambda _: full_pull_inflated(client, blobs))
        index = best_of(args.rounds, lambda n: index_once(client, n))
    ratio = index / pull
    print(f"  full pull (baseline)   {pull:6.2f} s  {size / MIB / pull:7.1f} MiB/s")
    print(f"  pull + inflate         {inflated:6.2f} s  {size / MIB / inflated:7.1f} MiB/s")
    print(f"  index image            {index:6.2f} s  {size / MIB / index:7.1f} MiB/s")
    print(f"  ratio index / pull     {ratio:6.2f}   (loopback: no target, see the network bench)")
    print(f"  ratio index / pull+inflate {index / inflated:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
