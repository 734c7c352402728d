"""Values the serializer must write faithfully, or mark alone without losing the record
(issue 12, item 9). The cases live in ``tests/support/round_two_scenarios.py``
(``bench_reliability`` runs them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.round_two_scenarios import SERIALIZER_CASES, run_serializer_value


@pytest.mark.parametrize("name", SERIALIZER_CASES)
def test_a_value_is_written_faithfully_or_marked_alone(tmp_path: Path, name: str) -> None:
    outcome = run_serializer_value(tmp_path, name)
    assert outcome.problems == []
    assert outcome.written == outcome.submitted == 1
