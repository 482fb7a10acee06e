"""Registry and network faults while indexing: a verified index or a clean failure, never damage.

The judge is in faults.py; `make faults` runs every scenario several times
and prints the table.
"""

from __future__ import annotations

import pytest
from faults import SCENARIOS, Outcome, Scenario, run_scenario
from support.registry import LocalRegistry

pytestmark = pytest.mark.registry


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.replace(" ", "-"))
def test_a_fault_ends_in_a_verified_index_or_a_clean_failure(
    registry: LocalRegistry, scenario: Scenario
) -> None:
    run = run_scenario(registry, scenario)
    assert run.faults_fired > 0, "the fault was never triggered: the scenario tests nothing"
    assert run.fault_hit, run.exchanges
    assert run.outcome is not Outcome.CORRUPTED, run.detail
    if scenario.must_complete:
        assert run.outcome is Outcome.COMPLETED, run.detail
    else:
        assert run.outcome is Outcome.FAILED_CLEANLY, run.detail
