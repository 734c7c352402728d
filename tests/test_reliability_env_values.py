"""Odd values from the env never stop training (issue 12, item 8).

Each kind trains fine without our callback; with it, PPO's ``learn()`` must complete,
the record must hold a placeholder (or null, or the documented mean) for that field,
and the problem must be counted with one warning, however many steps reported it. The
cases live in ``tests/support/round_two_scenarios.py`` (``bench_reliability`` runs them too).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from user_envs import ODD_VALUES

from tests.support.round_two_scenarios import ODD_VALUE_CASES, run_odd_env_value


@pytest.mark.parametrize("name", ODD_VALUE_CASES)
def test_an_odd_env_value_never_stops_training_and_is_counted_once(tmp_path: Path, name: str) -> None:
    outcome = run_odd_env_value(tmp_path, name)
    assert outcome.problems == []
    assert outcome.failed == outcome.dropped == 0 and outcome.written == outcome.submitted > 0


def test_every_odd_value_kind_has_a_case() -> None:
    assert {case.kind for case in ODD_VALUE_CASES.values()} == set(ODD_VALUES)
