"""Smoke test of the read benchmark: the three loads give the same frame and are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_read


def test_quick_run_reports_the_three_loads(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pandas")
    results = tmp_path / "RESULTS.md"

    assert bench_read.main(["--quick", "--dir", str(tmp_path), "--results", str(results)]) == 0

    section = results.read_text()
    assert "4,000 rows x 28 dotted columns" in section
    for label in ("(a) naive", "(b) Run.to_pandas, json files", "(c) Run.to_pandas, jsonl.zst segments"):
        assert f"| {label}" in section
    assert list(tmp_path.glob("bench_read_*")) == []  # the runs are removed
    assert capsys.readouterr().out.strip() in section
