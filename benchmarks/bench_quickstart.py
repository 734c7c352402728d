"""The README's quick start, timed with ``--torch_threads 1`` (the default) and ``--torch_threads 2``.

``python -m benchmarks.bench_quickstart [--rounds 2] [--threads 1 2]`` runs
``rtsave train --run_name go1_demo --total_timesteps 20000 --torch_threads N`` in a
fresh folder for each N, interleaved round by round so a change in the machine's load
touches every setting alike, and appends the wall times, their medians and the ratio
to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.reporting import add_run_options, header_lines, publish

PROJECT_ROOT = Path(__file__).resolve().parents[1]
QUICK_START = ["train", "--run_name", "go1_demo", "--total_timesteps", "20000"]
QUICK_TIMESTEPS = "2048"


@dataclass
class Timing:
    round: int
    threads: int
    seconds: float
    load_before: float


def time_quick_start(threads: int, total_timesteps: str) -> float:
    """Wall seconds of one quick start in a fresh folder (the CLI exactly as a user runs it)."""
    arguments = [*QUICK_START, "--torch_threads", str(threads)]
    arguments[arguments.index("--total_timesteps") + 1] = total_timesteps
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rtsave_async", *arguments], cwd=folder, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each runs every thread count once (default 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    add_run_options(parser, f"{QUICK_TIMESTEPS} timesteps, one round (a smoke test)")
    args = parser.parse_args(argv)
    rounds, total = (1, QUICK_TIMESTEPS) if args.quick else (args.rounds, "20000")
    load_before = os.getloadavg()[0]
    timings = []
    for round_ in range(1, rounds + 1):
        for threads in args.threads:
            load = os.getloadavg()[0]
            timings.append(Timing(round_, threads, time_quick_start(threads, total), load))
            print(f"round {round_}, --torch_threads {threads}: {timings[-1].seconds:.1f} s (load {load:.2f})",
                  flush=True)
    medians = {threads: statistics.median(t.seconds for t in timings if t.threads == threads) for threads in args.threads}
    command = f"python -m benchmarks.bench_quickstart --rounds {rounds} --threads {' '.join(map(str, args.threads))}"
    lines = header_lines("## Quick start with and without --torch_threads 1", command, load_before)
    lines += [
        f"- What: `rtsave train --run_name go1_demo --total_timesteps {total} --torch_threads N` in a fresh folder, "
        f"wall time of the whole command (imports, env, training, saving); {rounds} round(s), thread counts "
        "interleaved within each round",
        "",
        "| round | --torch_threads | wall time (s) | 1-min load before |",
        "|---:|---:|---:|---:|",
        *[f"| {t.round} | {t.threads} | {t.seconds:.1f} | {t.load_before:.2f} |" for t in timings],
        "",
        "| --torch_threads | median (s) | vs 1 thread |",
        "|---:|---:|---:|",
        *[f"| {threads} | {median:.1f} | {median / medians[args.threads[0]]:.2f}x |" for threads, median in medians.items()],
        "",
    ]
    return publish("\n".join(lines), args.results, not args.no_append)


if __name__ == "__main__":
    raise SystemExit(main())
