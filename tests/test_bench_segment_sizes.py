"""Smoke test of the segment-size benchmark: real Go1 records saved as segments and counted."""

from __future__ import annotations

from support.bench_output import quick_run_rows

from benchmarks import bench_segment_sizes


def test_quick_run_counts_every_category(capsys) -> None:
    for cells in quick_run_rows(bench_segment_sizes, bench_segment_sizes.CATEGORIES, capsys).values():
        saves, records, json_bytes, disk_bytes = (float(cell.replace(",", "")) for cell in cells)
        assert saves > 0 and records >= saves and json_bytes > disk_bytes > 0
