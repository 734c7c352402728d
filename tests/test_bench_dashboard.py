"""Smoke test of the dashboard benchmark: first paint per run size and the update latency are reported."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_dashboard
from tests.support.dashboard import chromium_or_skip


def test_quick_run_reports_first_paint_and_update_latency(tmp_path: Path, capsys) -> None:
    chromium_or_skip()
    results = tmp_path / "RESULTS.md"

    assert bench_dashboard.main(["--quick", "--dir", str(tmp_path), "--results", str(results)]) == 0

    section = results.read_text()
    assert "## Dashboard (bench_dashboard)" in section
    assert "| 2,000 |" in section and "| 8,000 |" in section
    assert "Update latency" in section and "5 updates" in section
    assert list(tmp_path.glob("bench_dashboard_*")) == []  # the runs are removed
    assert capsys.readouterr().out.strip() in section
