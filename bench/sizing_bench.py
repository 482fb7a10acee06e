"""Lambda sizing: indexing throughput per vCPU count, and per GB-second of memory.

Lambda gives a function one vCPU per 1769 MiB of memory. Here each case runs
in a fresh process pinned to 1 or 2 cores, indexing one or two copies of the
large benchmark layer at once (the pipeline indexes up to four layers of an
image at once), and the throughput is divided by the memory that buys those
vCPUs. Best of three for each case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import engine_bench

MIB_PER_VCPU = 1769
RUNS = 3


def _child(path: str, cores: int, layers: int) -> None:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    print(json.dumps({"seconds": engine_bench.concurrent_builds(path, layers)}))


def _seconds(path: Path, cores: int, layers: int) -> float:
    command = [sys.executable, __file__, "--child", str(path), str(cores), str(layers)]
    runs = [
        json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        for _ in range(RUNS)
    ]
    return min(run["seconds"] for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0
    cores = len(os.sched_getaffinity(0))
    path = engine_bench.ensure_layer(engine_bench.FULL[0])
    size = path.stat().st_size
    print("\n== Lambda sizing: gzip MB indexed per second and per GB-second ==")
    print(f"{'memory':>10} {'vCPUs':>6} {'layers at once':>15} {'MB/s':>7} {'MB per GB-s':>12}")
    for vcpus in (1, 2):
        if vcpus > cores:
            print(f"{vcpus * MIB_PER_VCPU:>6} MiB  (needs {vcpus} cores; this machine has {cores})")
            continue
        for layers in (1, 2):
            rate = size * layers / _seconds(path, vcpus, layers) / 1e6
            gib = vcpus * MIB_PER_VCPU / 1024
            print(
                f"{vcpus * MIB_PER_VCPU:>6} MiB {vcpus:>6} {layers:>15} {rate:>7.0f} "
                f"{rate / gib:>12.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
