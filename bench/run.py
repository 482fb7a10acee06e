"""`make bench`: every benchmark, printed as ratios against baselines measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_bench  # noqa: E402
import pipeline_bench  # noqa: E402


def main() -> int:
    status = engine_bench.main()
    status |= pipeline_bench.main()
    return status


if __name__ == "__main__":
    sys.exit(main())
