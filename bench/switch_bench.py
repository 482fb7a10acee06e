"""GIL switch interval: do builds run faster with the engine's shortened interval?

``build_ztoc`` shortens the process-wide GIL switch interval
(``engine.build.SWITCH_INTERVAL``, 0.1 ms instead of CPython's 5 ms) so the
inflate and hash threads get the GIL back promptly from the tar thread. The
pipeline builds up to four layers at once in one process, where the threads
of four builds compete for one GIL. Each case runs in a fresh process, one
build or four concurrent builds of the same layer file, three ways: CPython's
5 ms left alone, 0.1 ms whenever a build runs, and what the engine does
(0.1 ms only while a build runs alone); best of ``--rounds``, the variants
taking turns.

    .venv/bin/python bench/switch_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import engine_bench

VARIANTS = ("5 ms", "0.1 ms", "engine")


def _child(path: str, builds: int, variant: str) -> dict[str, float]:
    from soci_indexer.engine import build

    if variant == "5 ms":  # the engine then leaves the interval as it found it
        build.SWITCH_INTERVAL = sys.getswitchinterval()
    elif variant == "0.1 ms":
        build.SHORTEN_ONLY_ALONE = False
    return {"seconds": engine_bench.concurrent_builds(path, builds)}


def _once(path: str, builds: int, variant: str) -> float:
    command = [sys.executable, __file__, "--child", path, str(builds), variant]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds: float = json.loads(output)["seconds"]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, builds, variant = args.child
        print(json.dumps(_child(path, int(builds), variant)))
        return 0
    print(
        f"\n== GIL switch interval: builds in one process, 0.1 ms vs CPython's 5 ms"
        f" (best of {args.rounds}, fresh processes) =="
    )
    print(f"{'layer':<12} {'builds':>6} {'5 ms':>8} {'0.1 ms':>8} {'engine':>8}  ratios to 5 ms")
    for spec in engine_bench.FULL:
        path = str(engine_bench.ensure_layer(spec))
        for builds in (1, 4):
            times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    times[variant].append(_once(path, builds, variant))
            best = [min(times[variant]) for variant in VARIANTS]
            print(
                f"{spec.name:<12} {builds:>6} {best[0]:>6.2f} s {best[1]:>6.2f} s {best[2]:>6.2f} s"
                f"  {best[1] / best[0]:.2f} {best[2] / best[0]:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
