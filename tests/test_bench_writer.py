"""Smoke test of the writer benchmark: every variant runs, reports and writes readable files."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from benchmarks import bench_writer, reporting


def _table_cells(output: str, label: str) -> list[str]:
    """The cells of the first Markdown table row for ``label``."""
    row = next(line for line in output.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.strip().strip("|").split("|")][1:]


def test_quick_run_reports_every_variant_and_writes_readable_files(tmp_path: Path, capsys) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["--quick", "--no-append", "--dir", str(tmp_path), "--keep-files", "--results", str(results)]

    assert bench_writer.main(argv) == 0

    output = capsys.readouterr().out
    assert output.startswith(bench_writer.SECTION_HEADING)
    assert not results.exists()
    expected = [
        json.loads(orjson.dumps(snapshot, option=orjson.OPT_SERIALIZE_NUMPY))
        for snapshot in bench_writer.make_snapshots(bench_writer.QUICK_SCALE.snapshots)
    ]
    for variant in bench_writer.VARIANTS:
        cells = _table_cells(output, variant.label)
        throughput, producer = cells[:3], cells[3:]
        assert all(float(cell) > 0 for cell in producer)
        if not variant.paced:
            assert all(float(cell.replace(",", "")) > 0 for cell in throughput)
        folders = sorted(tmp_path.glob(f"rtsave-bench-writer-*/round*/{variant.key}"))
        assert len(folders) == bench_writer.QUICK_SCALE.rounds
        for folder in folders:
            files = sorted(bench_writer.stored_files(folder))
            stored = [[{key: value for key, value in record.items() if key != "_rtsave"}
                       for record in json.loads(path.read_bytes())] for path in files]
            assert stored == expected, folder


def test_append_section_creates_the_file_with_its_title_then_appends(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"

    reporting.append_section(results, "## First\n")
    reporting.append_section(results, "## Second\n")

    text = results.read_text(encoding="utf-8")
    assert text.startswith(reporting.RESULTS_TITLE)
    assert text.index("## First") < text.index("## Second")


def test_quick_segment_run_reports_both_variants(tmp_path: Path, capsys) -> None:
    argv = ["--format", "jsonl.zst", "--quick", "--rounds", "3", "--no-append", "--dir", str(tmp_path)]

    assert bench_writer.main(argv) == 0

    captured = capsys.readouterr()
    output = captured.out
    assert output.startswith(bench_writer.SEGMENT_HEADING)
    assert "then 3 rounds," in output and "round 3/3" in captured.err
    assert output.count("per-round ratios") == 2
    for label in bench_writer.SEGMENT_VARIANTS:
        rows = [line for line in output.splitlines() if f"| {label} |" in line]
        assert len(rows) == 2  # one per record layout
        for row in rows:
            records_per_s, mb_per_s, bytes_per_record = row.strip("|").split("|")[2:5]
            assert float(records_per_s.replace(",", "")) > 0 and float(mb_per_s) > 0 and float(bytes_per_record) > 0


def test_rounds_below_one_are_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        bench_writer.parse_args(["--rounds", "0"])
    assert "--rounds must be at least 1" in capsys.readouterr().err
