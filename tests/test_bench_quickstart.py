"""Smoke test of the quick-start benchmark: the CLI runs and its time is reported."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_quickstart


def test_quick_run_times_the_cli_and_appends_a_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"

    assert bench_quickstart.main(["--quick", "--threads", "1", "--results", str(results)]) == 0

    text = results.read_text()
    assert "## Quick start with and without --torch_threads 1" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1 | 1 |"))
    assert float(row.split("|")[3]) > 0
