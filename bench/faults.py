"""`make faults`: every fault scenario, several runs each, against a real registry.

Prints: fault, runs, runs the fault really hit, completed, failed cleanly,
corrupted (which must be 0).
The scenarios and the judge live in tests/reliability/faults.py, shared with
the test suite.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "reliability")]

from faults import SCENARIOS, Outcome, run_scenario  # noqa: E402
from support.registry import running_registry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per fault class (default 3)")
    args = parser.parse_args(argv)
    header = (
        f"{'fault':<28} {'runs':>5} {'fault hit':>10} {'completed':>10} "
        f"{'failed cleanly':>15} {'corrupted':>10}"
    )
    print(header)
    print("-" * len(header))
    corrupted = 0
    with running_registry() as registry:
        for scenario in SCENARIOS:
            counts: Counter[Outcome] = Counter()
            details = []
            hit = 0
            for run_number in range(args.runs):
                run = run_scenario(registry, scenario, seed=run_number + 1)
                counts[run.outcome] += 1
                hit += run.fault_hit
                if run.outcome is Outcome.CORRUPTED:
                    details.append(run.detail)
            corrupted += counts[Outcome.CORRUPTED]
            print(
                f"{scenario.name:<28} {args.runs:>5} {hit:>10} {counts[Outcome.COMPLETED]:>10} "
                f"{counts[Outcome.FAILED_CLEANLY]:>15} {counts[Outcome.CORRUPTED]:>10}"
            )
            for detail in details:
                print(f"    corrupted: {detail}")
    print(f"\ncorrupted runs: {corrupted} (must be 0)")
    return 1 if corrupted else 0


if __name__ == "__main__":
    sys.exit(main())
