"""Smoke test of the paired training benchmark: every variant trains in turns and is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_training_paired


def test_rounds_rotate_and_reverse_the_variants() -> None:
    orders = [bench_training_paired.round_order(["a", "b", "f"], index) for index in range(4)]
    assert orders == [["a", "b", "f"], ["a", "f", "b"], ["f", "a", "b"], ["f", "b", "a"]]
    assert all(sorted(order) == ["a", "b", "f"] for order in orders)


def test_quick_run_reports_every_variant_with_an_interval(tmp_path: Path, capsys) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["--quick", "--env-id", "Pendulum-v1", "--variants", "b,f,k,n", "--save-root", str(tmp_path),
            "--results", str(results)]

    assert bench_training_paired.main(argv) == 0

    output = capsys.readouterr().out
    assert output.startswith(bench_training_paired.SECTION_HEADING) and output.strip() in results.read_text()
    for key in ("a", "b", "f", "k", "n"):
        (row,) = [line for line in output.splitlines() if line.startswith(f"| ({key}) ")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[1]) > 0
        assert (float(cells[6]) > 0) == (key in ("b", "f"))  # only ours has a fixed cost ((k), (n) start nothing)
        for column in (4, 7, 8):  # wall-time ratio, process CPU, training thread CPU
            median, interval = cells[column].split(" [")
            low, high = (float(value) for value in interval.rstrip("]").split(", "))
            assert low <= float(median) <= high and float(median) > 0
            if key == "a":
                assert float(median) == low == high == 1.0
        share, interval = cells[9].split(" [")
        low, high = (float(value.rstrip("%")) for value in interval.rstrip("]").split(", "))
        assert low <= float(share.rstrip("%")) <= high and (low > 0) == (key != "a")  # (a) runs no hooks
        assert float(cells[10].split(" [")[0]) == pytest.approx(1 - float(share.rstrip("%")) / 100, abs=1e-3)
        assert float(cells[11]) >= 0  # the training thread's waits per 1,000 steps (Linux)
    assert list(tmp_path.glob("bench_training_paired_*")) == []  # save dirs removed
