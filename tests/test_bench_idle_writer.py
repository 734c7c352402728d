"""Smoke test of the idle-writer benchmark: a share of one core per format."""

from __future__ import annotations

from benchmarks import bench_idle_writer


def test_quick_run_reports_a_share_for_every_format(capsys) -> None:
    assert bench_idle_writer.main(["--quick", "--no-append"]) == 0
    output = capsys.readouterr().out
    assert output.startswith(bench_idle_writer.SECTION_HEADING)
    for name in bench_idle_writer.FORMATS:
        row = next(line for line in output.splitlines() if line.startswith(f"| {name} |"))
        median, low, high = (float(cell.strip().rstrip("%")) for cell in row.strip("|").split("|")[1:])
        assert 0 <= low <= median <= high < 100
