"""Smoke test of the idle-writer benchmark: a share of one core per format."""

from __future__ import annotations

from support.bench_output import quick_run_rows

from benchmarks import bench_idle_writer


def test_quick_run_reports_a_share_for_every_format(capsys) -> None:
    for cells in quick_run_rows(bench_idle_writer, bench_idle_writer.FORMATS, capsys).values():
        median, low, high = (float(cell.rstrip("%")) for cell in cells)
        assert 0 <= low <= median <= high < 100
