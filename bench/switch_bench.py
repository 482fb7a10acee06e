"""GIL switch interval: do builds run faster with the engine's shortened interval?

``build_ztoc`` shortens the process-wide GIL switch interval while builds run
(``engine.build.SWITCH_INTERVAL``, 0.1 ms instead of CPython's 5 ms) so the
inflate and hash threads get the GIL back promptly from the tar thread. The
pipeline builds up to four layers at once in one process, where the threads
of four builds compete for one GIL. Each case runs in a fresh process, one
build or four concurrent builds of the same layer file, with the engine's
interval and with CPython's default left alone; best of ``--rounds``, the
two variants taking turns.

    .venv/bin/python bench/switch_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import engine_bench


def _child(path: str, builds: int, shortened: bool) -> dict[str, float]:
    from soci_indexer.engine import build

    if not shortened:  # the engine then leaves the interval as it found it
        build.SWITCH_INTERVAL = sys.getswitchinterval()

    def one() -> None:
        with open(path, "rb") as layer:
            build.build_ztoc(layer)

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(builds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": time.perf_counter() - started}


def _once(path: str, builds: int, shortened: bool) -> float:
    command = [sys.executable, __file__, "--child", path, str(builds), str(int(shortened))]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds: float = json.loads(output)["seconds"]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, builds, shortened = args.child
        print(json.dumps(_child(path, int(builds), shortened == "1")))
        return 0
    print(
        f"\n== GIL switch interval: builds in one process, 0.1 ms vs CPython's 5 ms"
        f" (best of {args.rounds}, fresh processes) =="
    )
    print(f"{'layer':<12} {'builds':>6} {'5 ms':>8} {'0.1 ms':>8} {'0.1 / 5':>8}")
    for spec in engine_bench.FULL:
        path = str(engine_bench.ensure_layer(spec))
        for builds in (1, 4):
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds):
                for shortened in (False, True):
                    times[shortened].append(_once(path, builds, shortened))
            default, short = min(times[False]), min(times[True])
            print(
                f"{spec.name:<12} {builds:>6} {default:>6.2f} s {short:>6.2f} s"
                f" {short / default:>8.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
