"""Reader commands on a big run: ``rtsave inspect``, ``export --format parquet``, ``archive`` (issue #14).

Builds one file-per-save run (format ``json``, the real :class:`SnapshotWriter`) of
``--records`` episode records (``--envs`` per save, the callbacks' record shape with a
finished episode each, plus a learning-metrics record every 10 saves), then measures:

- ``rtsave inspect RUN --json`` wall time (a child process: imports included), on the
  closed run and while a second writer keeps appending to it;
- ``rtsave export --format parquet``: time and Parquet size against the JSON on disk;
- ``rtsave archive`` to each format (on copies of the run): time, bytes before/after;
- ``Run.to_pandas("episodes")`` from each archive and from the json files, against the
  naive ``json.load`` loop + ``json_normalize`` (timed on a sample of the files, scaled
  to all of them: the full loop takes minutes).

Targets: inspect <= 3 s; archive >= 4x smaller; Parquet to_pandas <= 1 s or >= 20x
faster than the naive loop.

    python -m benchmarks.bench_cli_readers [--records 1000000] [--envs 16] [--quick] [--no-append]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import reporting
from benchmarks.bench_read import naive_load, timed
from rtsave_async import SnapshotWriter, open_run
from tests.support.runs import episode_record

NAIVE_SAMPLE_FILES = 2_000


def build_run(path: Path, saves: int, envs: int) -> None:
    rng = random.Random(0)
    writer = SnapshotWriter(path, block_timeout=600.0)  # the workload must be whole: wait, never drop
    writer.submit("hyperparameters", {"timestep": 0, "total_timesteps": saves * 100, "model_type": "PPO",
                                      "algorithm_hyperparameters": {"learning_rate": 0.0003}})
    for save in range(saves):
        timestep = (save + 1) * 100
        writer.submit("episodes", [episode_record(timestep, env, rng) for env in range(envs)])
        if save % 10 == 9:
            writer.submit("learning_metrics", [{"timestep": timestep, "fps": 500.0,
                                                "logger": {"train/loss": rng.random()}}])
    writer.close()
    if writer.stats()["dropped"] or writer.stats()["failed"]:
        raise RuntimeError(f"building the run lost snapshots: {writer.stats()}")


def rtsave_seconds(*args: str) -> float:
    """Wall seconds of ``python -m rtsave_async ARGS`` (fails loudly if the command does)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rtsave_async", *args], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return time.perf_counter() - start


def inspect_while_written(run: Path, envs: int) -> tuple[float, int]:
    """inspect's wall time while a second writer appends a save every 10 ms; saves it added."""
    stop = threading.Event()
    added = [0]

    def keep_writing() -> None:
        rng = random.Random(1)
        writer = SnapshotWriter(run, writer_name="appender")
        while not stop.is_set():
            writer.submit("episodes", [episode_record(10**9 + added[0], env, rng) for env in range(envs)])
            added[0] += 1
            time.sleep(0.01)
        writer.close()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        time.sleep(2.0)
        seconds = rtsave_seconds("inspect", str(run), "--json")
    finally:
        stop.set()
        thread.join()
    return seconds, added[0]


def data_bytes(run: Path) -> int:
    """Bytes of the record files (checkpoints, manifests and archive manifests left out)."""
    return sum(path.stat().st_size for folder in run.iterdir() if folder.is_dir()
               and folder.name not in ("writers", "archives", "checkpoints") for path in folder.iterdir())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="episode records (default 1,000,000)")
    parser.add_argument("--envs", type=int, default=16, help="episode records per save (default 16)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the run (default: a temp folder)")
    reporting.add_run_options(parser, "8,000 records (a smoke test)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    records = 8_000 if args.quick else args.records
    saves = records // args.envs
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench_cli_readers_", dir=args.dir))
    try:
        run = root / "run"
        started = time.perf_counter()
        build_run(run, saves, args.envs)
        build_s = time.perf_counter() - started
        json_bytes = data_bytes(run)
        json_files = sum(1 for _ in (run / "episodes").iterdir())
        copies = {format: root / format.replace(".", "_") for format in ("parquet", "jsonl.zst")}
        for copy in copies.values():
            shutil.copytree(run, copy)
        inspect_s = rtsave_seconds("inspect", str(run), "--json")
        export_s = rtsave_seconds("export", str(run), "--format", "parquet", "--out", str(root / "episodes.parquet"))
        export_bytes = (root / "episodes.parquet").stat().st_size
        episodes_json_bytes = sum(path.stat().st_size for path in (run / "episodes").iterdir())
        json_load_s, json_cpu_s, frame = timed(lambda: open_run(run).to_pandas("episodes"))
        shape = frame.shape
        del frame
        sample = sorted((run / "episodes").iterdir())[:NAIVE_SAMPLE_FILES]
        sample_root = root / "sample"
        (sample_root / "episodes").mkdir(parents=True)
        for path in sample:
            shutil.copy(path, sample_root / "episodes" / path.name)
        naive_sample_s, _, _ = timed(lambda: naive_load(sample_root))
        naive_s = naive_sample_s * json_files / len(sample)
        archives = {}
        for format, copy in copies.items():
            archive_s = rtsave_seconds("archive", str(copy), "--format", format)
            load_s, load_cpu_s, frame = timed(lambda: open_run(copy).to_pandas("episodes"))
            if frame.shape != shape:
                raise RuntimeError(f"{format} archive reads back as {frame.shape}, not {shape}")
            del frame
            archives[format] = {"archive_s": archive_s, "after": data_bytes(copy), "load_s": load_s,
                                "load_cpu_s": load_cpu_s, "inspect_s": rtsave_seconds("inspect", str(copy), "--json")}
        running_s, appended = inspect_while_written(run, args.envs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = reporting.header_lines("## Reader commands: inspect, export, archive (bench_cli_readers)",
                                   "python -m benchmarks.bench_cli_readers" + (" --quick" if args.quick else
                                   f" --records {records} --envs {args.envs}"), load_before)
    lines += [
        f"- Workload: {saves * args.envs:,} episode records ({args.envs} per save, {saves:,} saves; the callbacks' "
        f"record shape with one finished episode each) in a format-json run of {json_files:,} episode files, "
        f"{json_bytes / 2**20:,.1f} MiB of record files (real SnapshotWriter, built in {build_s:.0f} s); "
        f"a DataFrame of {shape[0]:,} rows x {shape[1]} columns; run in `{root.parent}`",
        "",
        "| What | wall s | result |",
        "| --- | ---: | --- |",
        f"| `rtsave inspect --json`, closed json run | {inspect_s:.2f} | target <= 3 s: "
        f"{'met' if inspect_s <= 3 else 'not met'} |",
        f"| `rtsave inspect --json`, while a second writer appends (added {appended} saves meanwhile) | "
        f"{running_s:.2f} | status running |",
        f"| `rtsave export --format parquet` | {export_s:.2f} | {export_bytes / 2**20:,.1f} MiB, "
        f"{episodes_json_bytes / export_bytes:.1f}x smaller than the {episodes_json_bytes / 2**20:,.1f} MiB of "
        f"episode JSON, {export_bytes / shape[0]:.0f} bytes/record |",
    ]
    for format, figures in archives.items():
        ratio = json_bytes / figures["after"]
        lines.append(f"| `rtsave archive --format {format}` | {figures['archive_s']:.2f} | "
                     f"{json_bytes / 2**20:,.1f} -> {figures['after'] / 2**20:,.1f} MiB ({ratio:.1f}x smaller; "
                     f"target >= 4x: {'met' if ratio >= 4 else 'not met'}); inspect after: "
                     f"{figures['inspect_s']:.2f} s |")
    lines += [
        "",
        "| `to_pandas(\"episodes\")` from | wall s | CPU s | records/s | vs naive loop |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| naive json.load loop + json_normalize (timed on {len(sample):,} files, scaled x{json_files / len(sample):.1f}) "
        f"| {naive_s:.2f} | | {shape[0] / naive_s:,.0f} | 1.0x |",
        f"| json files | {json_load_s:.2f} | {json_cpu_s:.2f} | {shape[0] / json_load_s:,.0f} | "
        f"{naive_s / json_load_s:.1f}x |",
    ]
    for format, figures in archives.items():
        lines.append(f"| {format} archive | {figures['load_s']:.2f} | {figures['load_cpu_s']:.2f} | "
                     f"{shape[0] / figures['load_s']:,.0f} | {naive_s / figures['load_s']:.1f}x |")
    parquet = archives["parquet"]["load_s"]
    lines += ["", f"Target: Parquet to_pandas <= 1 s or >= 20x faster than the naive loop: {parquet:.2f} s, "
                  f"{naive_s / parquet:.1f}x ({'met' if parquet <= 1 or naive_s / parquet >= 20 else 'not met'})."]
    return reporting.publish("\n".join(lines) + "\n", args.results, append=not args.no_append)


if __name__ == "__main__":
    raise SystemExit(main())
