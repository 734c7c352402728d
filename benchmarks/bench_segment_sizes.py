"""Bytes per record of real training records in the segment format.

Run ``python -m benchmarks.bench_segment_sizes`` (under a minute): PPO on the Go1 env
(4 envs, DummyVecEnv) saves every step with ``format="jsonl.zst"``; the segments are
decoded and, per category, the records, the JSON bytes and the bytes on disk counted.
The Markdown section is printed and appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

from benchmarks.reporting import add_run_options, header_lines, publish
from tests.support.segments import decode_segment

SECTION_HEADING = "## Segment bytes per record on real Go1 records (bench_segment_sizes)"
CATEGORIES = ("episodes", "environment_states", "learning_metrics")


def measure(save_dir: Path, timesteps: int) -> list[str]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from rtsave_async import RealTimeSavingCallback
    from rtsave_async.envs import GO1_ENV_ID

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", make_vec_env(GO1_ENV_ID, n_envs=4, seed=0), n_steps=256, batch_size=256,
                n_epochs=1, seed=0, device="cpu")
    saving = RealTimeSavingCallback(save_dir, save_frequency=1, save_checkpoints=False,
                                    writer_options={"format": "jsonl.zst"})
    model.learn(timesteps, callback=saving)
    rows = ["| Category | saves | records | JSON bytes/record | on disk bytes/record |", "|---|---:|---:|---:|---:|"]
    for category in CATEGORIES:
        segments = list((save_dir / category).iterdir())
        lines = [line for path in segments for line in decode_segment(path.read_bytes()).lines]
        records = sum(len(orjson.loads(line)["data"]) for line in lines)
        disk = sum(path.stat().st_size for path in segments)
        json_bytes = sum(len(line) + 1 for line in lines)
        rows.append(f"| {category} | {len(lines):,} | {records:,} | {json_bytes / records:.1f} | {disk / records:.1f} |")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_segment_sizes", description=__doc__)
    add_run_options(parser, "smoke run: 512 timesteps")
    args = parser.parse_args(argv)
    timesteps = 512 if args.quick else 4096
    load_before = os.getloadavg()[0]
    save_dir = Path(tempfile.mkdtemp(prefix="rtsave-bench-segment-sizes-"))
    try:
        rows = measure(save_dir, timesteps)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    command = " ".join(["python -m benchmarks.bench_segment_sizes", *(sys.argv[1:] if argv is None else argv)])
    section = "\n".join([
        *header_lines(SECTION_HEADING, command, load_before),
        f"- Workload: PPO on `rtsave/Go1-v0`, 4 envs, {timesteps} timesteps, `save_frequency=1`, checkpoints "
        "off; an episodes save holds one record per env.",
        "", *rows, ""])
    return publish(section, args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
