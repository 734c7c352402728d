"""What a writer with nothing to do costs: its thread's CPU time while idle.

Run ``python -m benchmarks.bench_idle_writer`` (about 1 minute; ``--quick`` for a smoke
run). For each format, a writer stores one save, then sits idle for ``--seconds``; the
writer thread's CPU time over that window is read from Linux's per-thread
``/proc/self/task/<tid>/schedstat`` (nanoseconds on the CPU, kernel time included).
An idle writer's wake-ups are what the training thread pays at the default
``save_frequency``, where the writer is idle almost all the time: each one takes the GIL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.reporting import add_run_options, header_lines, publish
from rtsave_async import SnapshotWriter
from rtsave_async.formats import JSON, JSONL_ZST
from rtsave_async.writer.snapshot_writer import WRITER_THREAD_NAME

SECTION_HEADING = "## An idle writer's CPU time (bench_idle_writer)"
FORMATS = (JSON, JSONL_ZST)


def thread_cpu_seconds(native_id: int) -> float:
    """CPU seconds the thread ``native_id`` of this process has run (Linux)."""
    return int(Path(f"/proc/self/task/{native_id}/schedstat").read_text().split()[0]) / 1e9


def idle_share(format_name: str, seconds: float) -> float:
    """The share of one core the writer thread used while idle for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="rtsave-bench-idle-") as save_dir, \
            SnapshotWriter(save_dir, format=format_name) as writer:
        writer.submit("episodes", [{"timestep": 1, "reward": 0.5}])
        writer.flush(10)
        (thread,) = [thread for thread in threading.enumerate() if thread.name == WRITER_THREAD_NAME]
        thread_id = thread.native_id
        time.sleep(0.5)  # past the wake-ups that follow a drain
        start = thread_cpu_seconds(thread_id)
        time.sleep(seconds)
        return (thread_cpu_seconds(thread_id) - start) / seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_idle_writer", description=__doc__)
    add_run_options(parser, "smoke run: 1 round of 1 s per format")
    parser.add_argument("--seconds", type=float, default=10.0, help="idle window per round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per format (default 3)")
    args = parser.parse_args(argv)
    seconds, rounds = (1.0, 1) if args.quick else (args.seconds, args.rounds)
    load_before = os.getloadavg()[0]
    shares: dict[str, list[float]] = {name: [] for name in FORMATS}
    for _ in range(rounds):
        for name in FORMATS:
            shares[name].append(idle_share(name, seconds))
    command = " ".join(["python -m benchmarks.bench_idle_writer", *(sys.argv[1:] if argv is None else argv)])
    rows = ["| format | writer thread CPU while idle, share of one core (median) | min | max |",
            "|---|---:|---:|---:|"]
    rows += [f"| {name} | {statistics.median(values):.3%} | {min(values):.3%} | {max(values):.3%} |"
             for name, values in shares.items()]
    section = "\n".join([
        *header_lines(SECTION_HEADING, command, load_before),
        f"- Workload: per format and round, a `SnapshotWriter` (defaults) stores one save, then is idle for "
        f"{seconds:g} s; {rounds} round(s).",
        "", *rows, ""])
    return publish(section, args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
