"""`make bench`: every benchmark, printed as ratios against baselines measured in the same run.

Each benchmark prints its own targets and whether they were met; this runs
them all and ends with one line naming the benchmarks that missed one. A
missed target is a finding to read, not a crash: the exit status is non-zero
only when a benchmark could not run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_bench
import network_bench
import pipeline_bench
import scale_bench
import sizing_bench
import switch_bench
import verify_bench


def main() -> int:
    benchmarks = (("engine", engine_bench.main), ("network", network_bench.main),
                  ("switch", switch_bench.main), ("pipeline", pipeline_bench.main),
                  ("scale", scale_bench.main), ("sizing", sizing_bench.main),
                  ("verify", verify_bench.main))  # fmt: skip
    missed = [name for name, run in benchmarks if run([]) != 0]
    print(f"\nbenchmarks with a target missed: {', '.join(missed) if missed else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
