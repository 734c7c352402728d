"""Smoke test of the segment-size benchmark: real Go1 records saved as segments and counted."""

from __future__ import annotations

from benchmarks import bench_segment_sizes


def test_quick_run_counts_every_category(capsys) -> None:
    assert bench_segment_sizes.main(["--quick", "--no-append"]) == 0
    output = capsys.readouterr().out
    assert output.startswith(bench_segment_sizes.SECTION_HEADING)
    for category in bench_segment_sizes.CATEGORIES:
        row = next(line for line in output.splitlines() if line.startswith(f"| {category} |"))
        saves, records, json_bytes, disk_bytes = (float(cell.replace(",", "")) for cell in row.strip("|").split("|")[1:])
        assert saves > 0 and records >= saves and json_bytes > disk_bytes > 0
