"""Smoke test of the object-storage benchmark: every measurement runs and is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_s3


def test_quick_run_reports_every_measurement_and_loses_nothing(tmp_path: Path, capsys) -> None:
    pytest.importorskip("s3fs")
    results = tmp_path / "RESULTS.md"

    assert bench_s3.main(["--quick", "--no-append", "--results", str(results)]) == 0

    section = capsys.readouterr().out
    assert section.startswith(bench_s3.SECTION_HEADING)
    assert not results.exists()
    for label in ("records/s, jsonl.zst", "upload lag", "checkpoint of 1 MiB", "ratio s3:// / local",
                  "with the server down"):
        assert label in section
    assert "(lost: 0)" in section
