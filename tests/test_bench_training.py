"""Smoke test of the training benchmark: every variant trains, saves and is reported."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_training


def test_quick_run_reports_every_variant(tmp_path: Path, capsys) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["--quick", "--no-append", "--env-id", "Pendulum-v1", "--save-cost-envs", "2",
            "--save-root", str(tmp_path), "--results", str(results)]

    assert bench_training.main(argv) == 0

    output = capsys.readouterr().out
    assert output.startswith(bench_training.SECTION_HEADING) and not results.exists()
    for key, label in bench_training.VARIANTS.items():
        row = next(line for line in output.splitlines() if line.startswith(f"| ({key}) {label} |"))
        steps_per_second, *_, files = [cell.strip() for cell in row.strip("|").split("|")][1:]
        assert float(steps_per_second.replace(",", "")) > 0
        assert (int(files.replace(",", "")) > 0) == (key != "a"), row  # every saving variant wrote files
