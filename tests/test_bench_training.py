"""Smoke test of the training benchmark: every variant trains, saves and is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from benchmarks import bench_training
from benchmarks.piped_writer import PipedSegmentWriter
from rtsave_async.names import EPISODES, HYPERPARAMETERS, LEARNING_METRICS, parse_name
from tests.support.segments import decode_segment


@pytest.mark.parametrize("options", [[], ["--vec", "subproc", "--variants", "b,f"], ["--variants", "g,q,p,r"]],
                         ids=["dummy", "subproc", "cost-split"])
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


def test_the_piped_writer_stores_every_line_in_order_with_its_metadata(tmp_path: Path) -> None:
    writer = PipedSegmentWriter(tmp_path)
    saves = {category: [[{"timestep": step, "value": step * 0.5, "array": np.arange(3) + step}]
                        for step in range(300)] for category in (EPISODES, LEARNING_METRICS)}
    for step in range(300):
        for category, records in saves.items():
            writer.submit(category, records[step])
    writer.submit(HYPERPARAMETERS, lambda attachments: {"learning_rate": 3e-4})

    assert writer.close()["written"] == 601
    for category, records in {**saves, HYPERPARAMETERS: [{"learning_rate": 3e-4}]}.items():
        (segment,) = (tmp_path / category).iterdir()
        assert parse_name(segment.name) is not None
        decoded = decode_segment(segment.read_bytes())
        assert not decoded.torn_tail and decoded.bad_frame_at is None
        lines = [orjson.loads(line) for line in decoded.lines]
        assert [line["_rtsave"]["seq"] for line in lines] == list(range(1, len(records) + 1))
        assert {line["_rtsave"]["category"] for line in lines} == {category}
        assert [line["data"] for line in lines] == orjson.loads(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
