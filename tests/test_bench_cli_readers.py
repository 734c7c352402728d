"""Smoke test of the reader-commands benchmark: every figure is measured and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_cli_readers


def test_quick_run_reports_inspect_export_archive_and_loads(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pyarrow")
    results = tmp_path / "RESULTS.md"

    assert bench_cli_readers.main(["--quick", "--dir", str(tmp_path), "--results", str(results)]) == 0

    section = results.read_text()
    assert "8,000 episode records (16 per save, 500 saves" in section
    for label in ("`rtsave inspect --json`, closed json run", "`rtsave export --format parquet`",
                  "`rtsave archive --format parquet`", "`rtsave archive --format jsonl.zst`", "| parquet archive |",
                  "| jsonl.zst archive |", "| naive json.load loop"):
        assert label in section
    assert list(tmp_path.glob("bench_cli_readers_*")) == []  # the run and its copies are removed
    assert capsys.readouterr().out.strip() in section
