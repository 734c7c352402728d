"""Read benchmark: episode records into a pandas DataFrame with ``Run.to_pandas``.

Builds one run per layout holding the same episode records (Go1-shaped: the tracker's
fields with the env's detailed robot state, 4 envs per save): format ``json`` written
by the real :class:`SnapshotWriter` (one file per save), and format ``jsonl.zst``
written by the same writer with ``format="jsonl.zst"`` (at most 64 saves per frame).
Then, in interleaved rounds, times three ways to the same dotted-column DataFrame:

  (a) naive: ``json.load`` of every file in name order, then ``pandas.json_normalize``
  (b) ``open_run(json run).to_pandas("episodes")``
  (c) ``open_run(segment run).to_pandas("episodes")``

Target (issue #11): (c) at least 5x faster than (a).

    python -m benchmarks.bench_read [--records 1000000] [--rounds 3] [--quick] [--no-append]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import reporting
from rtsave_async import SnapshotWriter, list_snapshot_files, open_run

ENVS = 4
SAVES_PER_FRAME = 64  # saves per zstd frame at most (one writer batch)
LEGS = ("FR", "FL", "RR", "RL")


def episode_records(timestep: int, rng: random.Random) -> list[dict[str, Any]]:
    """One save of the ``episodes`` category: a record per env, as the tracker builds them."""
    def floats(count: int) -> list[float]:
        return [rng.uniform(-1, 1) for _ in range(count)]

    records = []
    for env_id in range(ENVS):
        x, y, z, w, qx, qy, qz, roll, pitch, yaw = floats(10)
        records.append({
            "timestep": timestep,
            "env_id": env_id,
            "episode_count": timestep // 3000,
            "success_count": timestep // 6000,
            "success_rate": 0.5,
            "detailed_info": {
                "episode_info": {"current_step": timestep % 750, "time_remaining": rng.uniform(0, 15)},
                "robot_state": {
                    "position": {"x": x, "y": y, "z": z},
                    "orientation": {"w": w, "x": qx, "y": qy, "z": qz, "roll": roll, "pitch": pitch, "yaw": yaw},
                    "velocity": {"linear": floats(3), "angular": floats(3)},
                    "joint_positions": floats(12),
                    "joint_velocities": floats(12),
                },
                "performance_metrics": {"episode_progress": rng.random(), "stability_score": rng.random()},
                "foot_contacts": {leg: rng.random() < 0.5 for leg in LEGS},
            },
            "finished_episodes": [],
        })
    return records


def build_runs(root: Path, saves: int) -> tuple[Path, Path]:
    """A json run and a segment run of ``saves`` saves each, same records."""
    json_run, segment_run = root / "json", root / "segments"
    rng_json, rng_segments = random.Random(0), random.Random(0)
    with SnapshotWriter(json_run) as writer:
        for index in range(saves):
            writer.submit("episodes", episode_records(4 * (index + 1), rng_json))
    stats = writer.stats()
    if stats["written"] != saves:
        raise RuntimeError(f"the json writer wrote {stats['written']} of {saves} saves")
    with SnapshotWriter(segment_run, format="jsonl.zst", batch_size=SAVES_PER_FRAME) as writer:
        for index in range(saves):
            writer.submit("episodes", episode_records(4 * (index + 1), rng_segments))
    if writer.stats()["written"] != saves:
        raise RuntimeError(f"the segment writer wrote {writer.stats()['written']} of {saves} saves")
    return json_run, segment_run


def naive_load(run: Path) -> Any:
    """What a user writes today: json.load every file, then json_normalize."""
    import pandas

    records = []
    for path in sorted((run / "episodes").iterdir()):
        if path.suffix == ".json" and not path.name.startswith("."):
            with open(path) as handle:
                records.extend(json.load(handle))
    return pandas.json_normalize(records)


def timed(load: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``load()`` (CPU time is less disturbed by other jobs on the machine)."""
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    frame = load()
    return time.perf_counter() - start, time.process_time() - cpu_start, frame


def folder_bytes(run: Path) -> int:
    return sum(path.stat().st_size for path in (run / "episodes").iterdir())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="episode records per run (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the runs (default: a temp folder)")
    reporting.add_run_options(parser, "4,000 records, 1 round (a smoke test)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    records, rounds = (4_000, 1) if args.quick else (args.records, args.rounds)
    saves = records // ENVS
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench_read_", dir=args.dir))
    try:
        build_start = time.perf_counter()
        json_run, segment_run = build_runs(root, saves)
        build_s = time.perf_counter() - build_start
        loads = {
            "(a) naive json.load loop + json_normalize": lambda: naive_load(json_run),
            "(b) Run.to_pandas, json files": lambda: open_run(json_run).to_pandas("episodes"),
            "(c) Run.to_pandas, jsonl.zst segments": lambda: open_run(segment_run).to_pandas("episodes"),
        }
        times: dict[str, list[float]] = {name: [] for name in loads}
        cpu_times: dict[str, list[float]] = {name: [] for name in loads}
        shapes = set()
        for _ in range(rounds):
            for name, load in loads.items():
                seconds, cpu_seconds, frame = timed(load)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
                # The naive loop also keeps the records' "_rtsave" metadata, which to_pandas leaves out.
                shapes.add((len(frame), sum(not str(column).startswith("_rtsave") for column in frame.columns)))
                del frame
        if len(shapes) != 1:
            raise RuntimeError(f"the three loads gave different frames: {shapes}")
        (shape,) = shapes
        sizes = {"json": folder_bytes(json_run), "segments": folder_bytes(segment_run)}
        files = {"json": len(list_snapshot_files(json_run, "episodes")),
                 "segments": len(list_snapshot_files(segment_run, "episodes"))}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    naive_name, segments_name = "(a) naive json.load loop + json_normalize", "(c) Run.to_pandas, jsonl.zst segments"
    naive, naive_cpu = statistics.median(times[naive_name]), statistics.median(cpu_times[naive_name])
    lines = reporting.header_lines("## Read into pandas (bench_read)",
                                   "python -m benchmarks.bench_read" + (" --quick" if args.quick else
                                   f" --records {records} --rounds {rounds}"), load_before)
    lines += [
        f"- Workload: {records:,} Go1-shaped episode records ({ENVS} per save, {saves:,} saves) -> a DataFrame of "
        f"{shape[0]:,} rows x {shape[1]} dotted columns; json run: {files['json']:,} files, "
        f"{sizes['json'] / 2**20:,.1f} MiB (real SnapshotWriter); segment run: {files['segments']} segments, "
        f"{sizes['segments'] / 2**20:,.1f} MiB ({SAVES_PER_FRAME} saves per frame); "
        f"runs built in {build_s:.0f} s; {rounds} interleaved round(s), runs in `{root.parent}`",
        "",
        "| Load | wall s (median) | min | max | records/s | wall ratio (a)/x | CPU s (median) | CPU ratio (a)/x |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, samples in times.items():
        median, cpu = statistics.median(samples), statistics.median(cpu_times[name])
        lines.append(f"| {name} | {median:.2f} | {min(samples):.2f} | {max(samples):.2f} | "
                     f"{records / median:,.0f} | {naive / median:.1f}x | {cpu:.2f} | {naive_cpu / cpu:.1f}x |")
    wall_ratio = naive / statistics.median(times[segments_name])
    cpu_ratio = naive_cpu / statistics.median(cpu_times[segments_name])
    lines += ["", f"Target: segments >= 5x faster than the naive loop: {wall_ratio:.1f}x wall, {cpu_ratio:.1f}x CPU "
                  f"({'met' if min(wall_ratio, cpu_ratio) >= 5 else 'not met'})."]
    return reporting.publish("\n".join(lines) + "\n", args.results, append=not args.no_append)


if __name__ == "__main__":
    raise SystemExit(main())
