"""Reading what a benchmark's smoke run prints."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType


def quick_run_rows(bench: ModuleType, first_cells: Iterable[str], capsys) -> dict[str, list[str]]:
    """Run ``bench.main(["--quick", "--no-append"])`` and check its section's heading; per
    first cell, the other cells of the table row that starts with it."""
    assert bench.main(["--quick", "--no-append"]) == 0
    output = capsys.readouterr().out
    assert output.startswith(bench.SECTION_HEADING)
    rows = {}
    for first in first_cells:
        row = next(line for line in output.splitlines() if line.startswith(f"| {first} |"))
        rows[first] = [cell.strip() for cell in row.strip("|").split("|")[1:]]
    return rows
