"""Smoke test of the training benchmark: every variant trains, saves and is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_training


@pytest.mark.parametrize("options", [[], ["--vec", "subproc", "--variants", "b,f"]], ids=["dummy", "subproc"])
def test_quick_run_reports_every_variant(tmp_path: Path, capsys, options: list[str]) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["--quick", "--no-append", "--env-id", "Pendulum-v1", "--save-cost-envs", "2",
            "--save-root", str(tmp_path), "--results", str(results), *options]

    assert bench_training.main(argv) == 0

    output = capsys.readouterr().out
    assert output.startswith(bench_training.SECTION_HEADING) and not results.exists()
    chosen = bench_training.parse_args(argv).variants
    assert ("subproc" in options) == ("SubprocVecEnv" in output)
    for key, label in bench_training.VARIANTS.items():
        rows = [line for line in output.splitlines() if line.startswith(f"| ({key}) {label} |")]
        assert len(rows) == (key in chosen), output
        if rows:
            cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
            steps_per_second, fixed_ms, files = cells[1], cells[6], cells[-1]
            assert float(steps_per_second.replace(",", "")) > 0
            assert (float(fixed_ms) > 0) == (key != "a")  # (a) has no callback to time
            assert (int(files.replace(",", "")) > 0) == (key != "a"), rows[0]  # every saving variant wrote files
