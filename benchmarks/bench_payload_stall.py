"""How long a very large save stalls the training thread while the writer thread stores it.

Run ``python -m benchmarks.bench_payload_stall`` (about 20 s). A stand-in training thread
ticks every ~0.1 ms (a short numpy operation, then a GIL hand-over) while a real
:class:`SnapshotWriter` stores one record holding a ``--mb`` MB float64 array to an
local folder (a temporary one); the longest gap between two ticks is the stall that save causes. With
``--format`` both ``json`` and ``jsonl.zst`` are measured. Prints a Markdown section and
appends it to ``benchmarks/RESULTS.md`` (``--no-append`` to only print).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

from benchmarks.reporting import add_run_options, header_lines, publish
from rtsave_async.writer import SnapshotWriter

SECTION_HEADING = "## Training-thread stall from one very large save (bench_payload_stall)"
TICK_WORK = np.ones(64)


def longest_stall(array: np.ndarray, format_name: str, save_dir: str) -> tuple[float, float]:
    """(longest gap between ticks in ms, seconds the store took) for one save of ``array``."""
    writer = SnapshotWriter(save_dir, format=format_name, queue_bytes=2 * array.nbytes)
    gaps: list[float] = []
    done = threading.Event()

    def store() -> None:
        writer.submit("episodes", [{"observations": array}])
        writer.flush()
        done.set()

    started = time.perf_counter()
    last = started
    storing = threading.Thread(target=store)
    storing.start()
    while not done.is_set():
        TICK_WORK.sum()
        time.sleep(0)  # the training thread, too, hands the GIL over now and then (torch, env steps)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    elapsed = time.perf_counter() - started
    storing.join()
    writer.close()
    return max(gaps) * 1000, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser, "one round instead of three")
    parser.add_argument("--mb", type=int, default=200, help="size of the array in the record (MB, default 200)")
    args = parser.parse_args(argv)
    array = np.random.default_rng(0).standard_normal(args.mb * 10**6 // 8)
    rounds = 1 if args.quick else 3
    command = f"python -m benchmarks.bench_payload_stall --mb {args.mb}{' --quick' if args.quick else ''}"
    lines = [*header_lines(SECTION_HEADING, command, os.getloadavg()[0]),
             f"- Workload: one record holding a {args.mb} MB float64 array, stored to a local folder (`tempfile`); "
             f"median of {rounds} round(s).", "",
             "| format | longest training-thread stall (ms) | store took (s) |", "|---|---:|---:|"]
    for format_name in ("json", "jsonl.zst"):
        results = []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory(prefix="bench_payload_stall_") as save_dir:
                results.append(longest_stall(array, format_name, save_dir))
        stall = statistics.median(result[0] for result in results)
        took = statistics.median(result[1] for result in results)
        lines.append(f"| {format_name} | {stall:.0f} | {took:.2f} |")
        print(lines[-1], flush=True)
    return publish("\n".join(lines) + "\n", args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
