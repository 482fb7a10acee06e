"""Engine benchmark: zTOC build time as a ratio to one plain zlib inflate pass, and peak RSS.

Three deterministic layers are generated under .bench/ (once; delete them to
regenerate): a ~600 MB tar of ~40k files of mixed text and random data; a
tar of 60k small files (256 B to 16 KiB, a quarter random, ~147 MB gzip);
and issue 10's case, 60k tiny files (256 B to 4 KiB, mostly text, ~43 MB
gzip: a site-packages or node_modules tree). Each is gzipped like
``gzip -6``. For each, best of N, each run a whole fresh process timed from
the outside (Python's start-up and imports included, for both):

- baseline: one ``zlib.decompressobj(47)`` pass over the layer file;
- build: ``build_ztoc`` on the layer file, on every core, then on one core
  (``os.sched_setaffinity``), since a Lambda function gets one vCPU per
  1769 MB of memory; peak RSS is the child's high-water mark (VmHWM).

    make bench                            # through bench/run.py
    .venv/bin/python bench/engine_bench.py --quick
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"
CHILD = Path(__file__).resolve().parent / "engine_child.py"
MIB = 1024 * 1024
RUNS = 3
TARGET_RSS_MIB = 150


@dataclass(frozen=True)
class LayerSpec:
    name: str
    files: int
    sizes: tuple[str, int, int]  # distribution, low, high (bytes)
    random_share: float  # share of files holding random (incompressible) bytes
    target_ratio: float


FULL = (
    LayerSpec("large-mixed", 40_000, ("exponential", 15_000, 2_000_000), 0.5, 1.3),
    LayerSpec("small-files", 60_000, ("log-uniform", 256, 16 * 1024), 0.25, 1.6),
    LayerSpec("tiny-files", 60_000, ("log-uniform", 256, 4 * 1024), 0.05, 1.6),
)
QUICK = (
    LayerSpec("quick-mixed", 4_000, ("exponential", 15_000, 2_000_000), 0.5, 1.3),
    LayerSpec("quick-small", 6_000, ("log-uniform", 256, 16 * 1024), 0.25, 1.6),
    LayerSpec("quick-tiny", 6_000, ("log-uniform", 256, 4 * 1024), 0.05, 1.6),
)


# --------------------------------------------------------------------------- layers


def _text_corpus(rng: random.Random) -> bytes:
    """8 MiB of source-like text to cut files from: compresses about 3:1, like real code."""
    words = [rng.randbytes(rng.randrange(1, 7)).hex().encode() for _ in range(4000)]
    lines = bytearray()
    while len(lines) < 8 * MIB:
        indent = b" " * rng.choice((0, 4, 8, 12))
        lines += indent + b" ".join(rng.choices(words, k=rng.randrange(3, 14))) + b"\n"
    return bytes(lines)


def _file_size(rng: random.Random, spec: LayerSpec) -> int:
    distribution, low, high = spec.sizes
    if distribution == "exponential":
        return min(int(rng.expovariate(1 / low)), high)
    return int(low * (high / low) ** rng.random())


def _files(spec: LayerSpec) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(f"soci-bench-{spec.name}")
    corpus = _text_corpus(rng)
    for number in range(spec.files):
        size = _file_size(rng, spec)
        if rng.random() < spec.random_share:
            data = rng.randbytes(size)
        else:
            start = rng.randrange(len(corpus) - size) if size < len(corpus) else 0
            data = corpus[start : start + size]
        package = f"pkg-{number % 211:03d}"
        yield f"usr/lib/app/{package}/module-{number % 17}/file-{number:06d}.dat", data


class _GzipWriter(io.RawIOBase):
    """A write-only file that gzips (level 6, like ``gzip -6``) into ``out``."""

    def __init__(self, out: io.BufferedWriter) -> None:
        self._out = out
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._out.write(self._compressor.compress(data))
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._out.write(self._compressor.flush())
            self._out.close()
        super().close()


def ensure_layer(spec: LayerSpec) -> Path:
    """The layer file for ``spec``, generated deterministically if missing."""
    path = BENCH_DIR / f"{spec.name}.tar.gz"
    if path.exists():
        return path
    BENCH_DIR.mkdir(exist_ok=True)
    print(f"generating {path.relative_to(REPO)} ({spec.files} files)...", flush=True)
    partial = path.with_suffix(".partial")
    with (
        _GzipWriter(partial.open("wb")) as raw,
        tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in _files(spec):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    partial.rename(path)
    return path


# --------------------------------------------------------------------------- children


def concurrent_builds(path: str, builds: int) -> float:
    """Seconds for ``builds`` builds of the layer file at ``path`` at once, one thread each."""
    from soci_indexer.engine.build import build_ztoc

    def one() -> None:
        with open(path, "rb") as layer:
            build_ztoc(layer)

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(builds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _peak_rss_kib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    return float("nan")


def _measure(path: Path, task: str, cores: int = 0) -> dict[str, float]:
    """Best of RUNS fresh processes, each timed whole from here: least time; peak RSS is
    the largest seen."""
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        output = subprocess.run(
            [sys.executable, str(CHILD), str(path), task, str(cores)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append({**json.loads(output), "seconds": time.perf_counter() - started})
    best = min(runs, key=lambda run: run["seconds"])
    return {**best, "peak_kib": max(run["peak_kib"] for run in runs)}


# --------------------------------------------------------------------------- report


def _verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def _report(spec: LayerSpec, path: Path, one_core: bool) -> None:
    compressed = path.stat().st_size
    baseline = _measure(path, "inflate")
    build = _measure(path, "build")
    ratio = build["seconds"] / baseline["seconds"]
    peak_mib = build["peak_kib"] / 1024
    tar_mb = build["uncompressed"] / 1e6
    print(
        f"{spec.name:<12} {int(build['entries']):>7} {compressed / 1e6:>8.1f} {tar_mb:>8.1f}"
        f" {int(build['spans']):>6} {baseline['seconds']:>8.2f} {build['seconds']:>8.2f}"
        f" {ratio:>6.2f} (<= {spec.target_ratio}: {_verdict(ratio, spec.target_ratio)})"
        f" {peak_mib:>7.1f} MiB (<= {TARGET_RSS_MIB}: {_verdict(peak_mib, TARGET_RSS_MIB)})"
    )
    lines = [("all cores", build)]
    if one_core:
        lines.append(("1 vCPU", _measure(path, "build", cores=1)))
    for label, run in lines:
        seconds = run["seconds"]
        print(
            f"{'':<12} {label:<9} {seconds:>6.2f} s  ratio {seconds / baseline['seconds']:>5.2f}"
            f"  {compressed / seconds / 1e6:>6.1f} MB/s gzip  {tar_mb / seconds:>6.1f} MB/s tar"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small layers: a smoke run")
    parser.add_argument("--layer", action="append", help="only this layer (repeatable)")
    args = parser.parse_args(argv)
    one_core = len(os.sched_getaffinity(0)) > 1
    print(
        f"\n== engine: zTOC build vs one zlib inflate pass"
        f" (best of {RUNS}, whole fresh processes, start-up included) =="
    )
    print(
        f"{'layer':<12} {'entries':>7} {'gzip MB':>8} {'tar MB':>8} {'spans':>6}"
        f" {'inflate':>8} {'build':>8} {'ratio':>6} {'target':>16} {'peak RSS':>11}"
    )
    for spec in QUICK if args.quick else FULL:
        if args.layer and spec.name not in args.layer:
            continue
        _report(spec, ensure_layer(spec), one_core)
    return 0


if __name__ == "__main__":
    sys.exit(main())
