"""The quick fuzz pass that runs in `make test` (the long one is `make fuzz`).

Seeded mutations of real layers and zTOCs: each must end in a result or a
typed error. Inputs that once broke a parser live in regressions/ and are
replayed here forever.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mutations import TARGETS, mutate, seeds_for

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
CASES_PER_TARGET = 150


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mutated_inputs_end_in_a_result_or_a_typed_error(target: str) -> None:
    rng = random.Random(f"quick-fuzz-{target}")
    seeds = seeds_for(target)
    run = TARGETS[target]
    for _ in range(CASES_PER_TARGET):
        data = rng.choice(seeds)
        for _ in range(rng.randrange(1, 4)):
            data = mutate(data, rng)
        run(data)


def _regression_cases() -> list[object]:
    cases = sorted(path for path in REGRESSIONS.glob("*/*") if path.is_file())
    if not cases:
        reason = "regressions/ is empty: no fuzzing run has found a crashing input yet"
        return [pytest.param(None, id="none-yet", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=f"{path.parent.name}/{path.name}") for path in cases]


@pytest.mark.parametrize("case", _regression_cases())
def test_inputs_that_once_broke_a_parser_end_in_a_result_or_a_typed_error(case: Path) -> None:
    TARGETS[case.parent.name](case.read_bytes())
