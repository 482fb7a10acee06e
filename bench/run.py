"""`make bench`: every benchmark, printed as ratios against baselines measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_bench
import pipeline_bench
import scale_bench


def main() -> int:
    status = engine_bench.main()
    status |= pipeline_bench.main()
    status |= scale_bench.main([])
    return status


if __name__ == "__main__":
    sys.exit(main())
