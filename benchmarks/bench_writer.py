"""Standalone writer benchmark: our SnapshotWriter against a raw orjson loop and json.dump.

Run ``python -m benchmarks.bench_writer`` (about 3 minutes; ``--quick`` for a smoke
run). Every snapshot is one file holding 12 records in the seed README's episode
layout with the full robot state; the joint vectors are float64 numpy arrays (copies
of MuJoCo's qpos/qvel). Variants, interleaved over several rounds:

- ``(a)`` :class:`SnapshotWriter` with ``io="direct"``, ``(a2)`` with ``io="aiofiles"``:
  submit every snapshot, then ``flush()``; the queue holds them all (policy ``block``).
  Run twice: as fast as possible (burst) and paced, with ~200 µs of GIL-holding
  Python work after each submit, as a training loop would do.
- ``(b)`` the raw limit: ``orjson.dumps`` + write a temp file + ``os.rename``, in the
  producer thread.
- ``(c)`` the naive way: ``json.dump(records, f, indent=2)`` in the producer thread.

For each variant: throughput from the first save call until every file is on disk
(page cache), and the producer-thread time per snapshot (the ``submit`` call for ours,
the whole dump and write for (b) and (c)). The Markdown section is printed and
appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import zstandard

from benchmarks.reporting import add_run_options, file_system_of, header_lines, publish
from rtsave_async import SnapshotWriter
from rtsave_async.names import EPISODES
from rtsave_async.sinks.local import LocalSink
from rtsave_async.formats.segments import ZSTD_LEVEL
from rtsave_async.formats.serialize import SnapshotSerializer
from tests.support.segments import decode_segment

Record = dict[str, Any]
Snapshot = list[Record]

NUM_ENVS = 12
NUM_JOINTS = 12
SAVE_FREQUENCY = 1000  # timesteps between snapshots, as in the seed's example
PACE_NS = 200_000  # Python work between two submits in the paced runs
SUBMIT_P99_TARGET_US = 20.0
THROUGHPUT_TARGET_FRACTION = 0.5  # ours must reach this share of the raw limit (b)
PROFILE_TOP = 12  # rows of the writer-thread profile shown when a target is missed
STEP_PASSES = 3  # passes over all snapshots when timing the writer's steps alone

SECTION_HEADING = "## Writer throughput (bench_writer)"


@dataclass(frozen=True)
class Scale:
    """How much work one run does."""

    snapshots: int  # files per variant and round
    rounds: int


FULL_SCALE = Scale(snapshots=3000, rounds=5)
QUICK_SCALE = Scale(snapshots=150, rounds=2)


# ---------------------------------------------------------------------------- data
def make_snapshots(count: int, seed: int = 0) -> list[Snapshot]:
    """``count`` snapshots of ``NUM_ENVS`` episode records each, values from a seeded RNG."""
    rng = np.random.default_rng(seed)
    episodes = np.zeros(NUM_ENVS, dtype=np.int64)
    successes = np.zeros(NUM_ENVS, dtype=np.int64)
    snapshots = []
    for index in range(count):
        finished = rng.random(NUM_ENVS) < 0.3
        episodes += finished
        successes += finished & (rng.random(NUM_ENVS) < 0.55)
        timestep = (index + 1) * SAVE_FREQUENCY
        snapshots.append([
            make_episode_record(rng, timestep, env_id, int(episodes[env_id]), int(successes[env_id]))
            for env_id in range(NUM_ENVS)
        ])
    return snapshots


def make_episode_record(
    rng: np.random.Generator, timestep: int, env_id: int, episode_count: int, success_count: int
) -> Record:
    """One record in the seed README's episode layout, with the full robot state."""
    x, y, z, vx, vy, vz, wx, wy, wz, roll, pitch, yaw = rng.normal(0.0, 0.2, 12).tolist()
    progress, stability, remaining = rng.random(3).tolist()
    w, qx, qy, qz = _quaternion(roll, pitch, yaw)
    current_step = int(rng.integers(0, 1000))
    return {
        "timestep": timestep,
        "env_id": env_id,
        "episode_count": episode_count,
        "success_count": success_count,
        "success_rate": success_count / episode_count if episode_count else 0.0,
        "detailed_info": {
            "episode_info": {"current_step": current_step, "time_remaining": 20.0 * remaining},
            "robot_state": {
                "position": {"x": x, "y": y, "z": 0.3 + abs(z)},
                "orientation": {"w": w, "x": qx, "y": qy, "z": qz, "roll": roll, "pitch": pitch, "yaw": yaw},
                "velocity": {"linear": [vx, vy, vz], "angular": [wx, wy, wz]},
                # copied from MuJoCo's qpos/qvel as a callback would: float64 arrays
                "joint_positions": rng.normal(0.0, 0.5, NUM_JOINTS),
                "joint_velocities": rng.normal(0.0, 2.0, NUM_JOINTS),
            },
            "performance_metrics": {"episode_progress": progress, "stability_score": stability},
            "foot_contacts": dict(zip(("FR", "FL", "RR", "RL"), (rng.random(4) < 0.5).tolist())),
        },
    }


def _quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(w, x, y, z) of the rotation given by Euler angles in radians."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    )


# ------------------------------------------------------------------------ variants
@dataclass(frozen=True)
class Saver:
    """One way of saving, opened on a folder: ``save`` runs on the producer thread per
    snapshot, ``wait_until_stored`` returns once every saved snapshot is a file."""

    save: Callable[[Snapshot], object]
    wait_until_stored: Callable[[], None]


@dataclass(frozen=True)
class Variant:
    """A row of the table: how to open a :class:`Saver` and how the producer paces."""

    key: str  # folder name for its files
    label: str
    open: Callable[[Path, int], AbstractContextManager[Saver]]  # (folder, snapshot count)
    pace_ns: int = 0  # Python work between two saves; 0 is a burst

    @property
    def paced(self) -> bool:
        return self.pace_ns > 0


@contextmanager
def open_snapshot_writer(folder: Path, snapshots: int, io: str) -> Iterator[Saver]:
    """Our writer, default options except a queue that holds every snapshot."""
    writer = SnapshotWriter(folder, queue_size=snapshots, io=io)

    def wait_until_stored() -> None:
        if not writer.flush():
            raise RuntimeError(f"SnapshotWriter failed: {writer.stats()['errors']}")

    try:
        yield Saver(partial(writer.submit, EPISODES), wait_until_stored)
    finally:
        stats = writer.close()
    if stats["written"] != snapshots:
        raise RuntimeError(f"SnapshotWriter wrote {stats['written']} of {snapshots} snapshots: {stats}")


@contextmanager
def open_raw_orjson(folder: Path, snapshots: int) -> Iterator[Saver]:
    """(b): orjson + temp file + rename, synchronously; no naming, queue or checks."""
    directory = folder / EPISODES
    directory.mkdir(parents=True)
    names = (os.path.join(directory, f"episodes_{index:08d}.json") for index in itertools.count())

    def save(records: Snapshot) -> None:
        write_and_rename(next(names), orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))

    yield Saver(save, lambda: None)


def write_and_rename(final: str, data: bytes) -> None:
    """The raw limit's store: write ``data`` to ``final + ".tmp"``, rename it to ``final``."""
    temp = final + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(temp, final)


@contextmanager
def open_naive_json(folder: Path, snapshots: int) -> Iterator[Saver]:
    """(c): ``json.dump(..., indent=2)`` straight into the final file, synchronously."""
    directory = folder / EPISODES
    directory.mkdir(parents=True)
    names = (directory / f"episodes_{index:08d}.json" for index in itertools.count())

    def save(records: Snapshot) -> None:
        with open(next(names), "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=2, default=_numpy_to_list)

    yield Saver(save, lambda: None)


def _numpy_to_list(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


OURS_DIRECT = "(a) SnapshotWriter io=direct"
OURS_AIOFILES = "(a2) SnapshotWriter io=aiofiles"
RAW_ORJSON = "(b) orjson + temp + rename (raw limit)"
NAIVE_JSON = "(c) json.dump indent=2 (naive)"
PACED = ", paced"

VARIANTS: tuple[Variant, ...] = (
    Variant("ours_direct", OURS_DIRECT, partial(open_snapshot_writer, io="direct")),
    Variant("ours_aiofiles", OURS_AIOFILES, partial(open_snapshot_writer, io="aiofiles")),
    Variant("ours_direct_paced", OURS_DIRECT + PACED, partial(open_snapshot_writer, io="direct"), PACE_NS),
    Variant("ours_aiofiles_paced", OURS_AIOFILES + PACED, partial(open_snapshot_writer, io="aiofiles"), PACE_NS),
    Variant("raw_orjson", RAW_ORJSON, open_raw_orjson),
    Variant("naive_json", NAIVE_JSON, open_naive_json),
)


# ----------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class Measurement:
    """One variant in one round."""

    elapsed_s: float  # first save call until every file is stored
    snapshots: int
    bytes_stored: int
    producer_ns: np.ndarray  # producer-thread time of each save call, ns

    @property
    def snapshots_per_s(self) -> float:
        return self.snapshots / self.elapsed_s

    @property
    def records_per_s(self) -> float:
        return self.snapshots * NUM_ENVS / self.elapsed_s

    @property
    def mb_per_s(self) -> float:
        return self.bytes_stored / 1e6 / self.elapsed_s

    @property
    def producer_us(self) -> dict[str, float]:
        return latency_summary_us(self.producer_ns)


def latency_summary_us(samples_ns: np.ndarray) -> dict[str, float]:
    """p50, p99 and mean of nanosecond samples, in microseconds."""
    p50, p99 = np.percentile(samples_ns, [50, 99]) / 1000.0
    return {"p50": float(p50), "p99": float(p99), "mean": float(samples_ns.mean()) / 1000.0}


def busy_wait(duration_ns: int) -> None:
    """Hold the GIL doing Python work for ``duration_ns`` (stands in for a training step)."""
    deadline = time.perf_counter_ns() + duration_ns
    while time.perf_counter_ns() < deadline:
        pass


def measure(variant: Variant, snapshots: Sequence[Snapshot], folder: Path) -> Measurement:
    """Save every snapshot into ``folder`` with ``variant``; time it and check the files."""
    producer_ns = []
    clock = time.perf_counter_ns
    os.sync()  # start without write-back left over from the previous run
    with variant.open(folder, len(snapshots)) as saver:
        save = saver.save
        started = clock()
        for records in snapshots:
            before = clock()
            save(records)
            producer_ns.append(clock() - before)
            if variant.pace_ns:
                busy_wait(variant.pace_ns)
        saver.wait_until_stored()
        elapsed_ns = clock() - started
    files = stored_files(folder)
    if len(files) != len(snapshots):
        raise RuntimeError(f"{variant.label}: {len(files)} files for {len(snapshots)} snapshots in {folder}")
    return Measurement(
        elapsed_s=elapsed_ns / 1e9,
        snapshots=len(snapshots),
        bytes_stored=sum(path.stat().st_size for path in files),
        producer_ns=np.array(producer_ns, dtype=np.int64),
    )


def stored_files(folder: Path) -> list[Path]:
    """The final snapshot files a variant left in ``folder`` (no temp or hidden files)."""
    return [path for path in (folder / EPISODES).iterdir() if path.suffix == ".json" and not path.name.startswith(".")]


def run_rounds(
    snapshots: Sequence[Snapshot], base: Path, rounds: int, keep_files: bool
) -> dict[str, list[Measurement]]:
    """Every variant once per round, in an order rotated each round; label -> measurements."""
    results: dict[str, list[Measurement]] = {variant.label: [] for variant in VARIANTS}
    for round_index in range(rounds):
        shift = round_index % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            folder = base / f"round{round_index + 1}" / variant.key
            results[variant.label].append(measure(variant, snapshots, folder))
            if not keep_files:
                shutil.rmtree(folder)
            print(f"  round {round_index + 1}/{rounds}: {variant.label} done", file=sys.stderr)
    return results


# ------------------------------------------------------------------------ diagnosis
SERIALIZE_STEP = "serialize: `SnapshotSerializer.dumps` / `orjson.dumps(OPT_SERIALIZE_NUMPY)`"
STORE_STEP = "store: `LocalSink.create` (io=direct) / temp file + `os.rename`"


def writer_step_costs_us(snapshots: Sequence[Snapshot], folder: Path) -> dict[str, dict[str, float]]:
    """µs per snapshot of our two writer steps and their raw (b) counterparts, each timed
    alone on this thread over every snapshot; median of ``STEP_PASSES`` passes, the order
    of ours and raw alternating between passes.

    :return: step -> {"ours": µs, "raw": µs}.
    """
    serializer = SnapshotSerializer()
    sink = LocalSink(folder)
    payloads = [orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY) for records in snapshots]

    def serialize_ours(_subfolder: str) -> None:
        for records in snapshots:
            serializer.dumps(records)  # dropped at once, as in the writer: no heap growth

    def serialize_raw(_subfolder: str) -> None:
        for records in snapshots:
            orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY)

    def raw_store(subfolder: str) -> None:
        directory = folder / subfolder
        directory.mkdir(parents=True)
        for index, data in enumerate(payloads):
            write_and_rename(os.path.join(directory, f"{index:08d}.json"), data)

    async def sink_put_all(subfolder: str) -> None:
        for index, data in enumerate(payloads):
            await sink.create(f"{subfolder}/{index:08d}.json", data)

    steps: dict[tuple[str, str], Callable[[str], object]] = {
        (SERIALIZE_STEP, "ours"): serialize_ours,
        (SERIALIZE_STEP, "raw"): serialize_raw,
        (STORE_STEP, "ours"): lambda subfolder: asyncio.run(sink_put_all(subfolder)),
        (STORE_STEP, "raw"): raw_store,
    }
    passes = []
    for pass_index in range(STEP_PASSES):
        costs = {}
        order = list(steps.items()) if pass_index % 2 == 0 else list(reversed(steps.items()))
        for (step_name, who), step in order:
            started = time.perf_counter_ns()
            step(f"pass{pass_index}_{who}")
            costs[(step_name, who)] = (time.perf_counter_ns() - started) / 1000 / len(snapshots)
        passes.append(costs)
    medians = median_per_key(passes)
    return {step: {who: medians[(step, who)] for who in ("ours", "raw")} for step in (SERIALIZE_STEP, STORE_STEP)}


def format_step_costs(costs: dict[str, dict[str, float]], ours: Summary, raw: Summary) -> str:
    """Per-snapshot wall time of ours (io=direct, burst) and (b), split into steps."""
    rest = {
        who: summary.wall_us_per_snapshot - sum(step[who] for step in costs.values())
        for who, summary in (("ours", ours), ("raw", raw))
    }
    lines = [
        "| Per snapshot, µs | ours (a) io=direct | raw (b) |",
        "|---|---:|---:|",
        *(f"| {step} | {cost['ours']:.1f} | {cost['raw']:.1f} |" for step, cost in costs.items()),
        f"| rest: queue, asyncio, naming, timers, thread hand-offs (wall − steps) | {rest['ours']:.1f} "
        f"| {rest['raw']:.1f} |",
        f"| wall: 1 / burst throughput (table above) | {ours.wall_us_per_snapshot:.1f} "
        f"| {raw.wall_us_per_snapshot:.1f} |",
        "",
        f"Steps timed alone on the main thread, no writer thread, median of {STEP_PASSES} passes over "
        "every snapshot, after the rounds. On a disk-backed file system the time per file drifts with "
        "the disk's state, so there the rest row mixes in that drift; on tmpfs it is the writer's overhead.",
    ]
    return "\n".join(lines)


#: Buckets of writer-thread time: label, test on a pstats (file name, function name).
PROFILE_BUCKETS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("orjson.dumps (C)", lambda file, function: "orjson.dumps" in function),
    ("file-system calls (os.open/write/close/link/unlink)",
     lambda file, function: function.startswith("<built-in method posix.")),
    ("idle: waiting for work (epoll, locks)",
     lambda file, function: "select.epoll" in function or "_thread.lock" in function),
    ("SnapshotSerializer Python code", lambda file, function: file.endswith("serialize.py")),
    ("pathlib path building", lambda file, function: file.endswith("pathlib.py")),
    ("asyncio event loop and tasks", lambda file, function: f"{os.sep}asyncio{os.sep}" in file),
)
OTHER_BUCKET = "other Python (writer, sink, naming, stats, queue)"


def profile_writer_thread(snapshots: Sequence[Snapshot], folder: Path) -> pstats.Stats:
    """cProfile of the ``rtsave-writer`` thread during one burst run of (a), io=direct.

    ``threading.setprofile`` runs a hook in every thread started meanwhile -- with
    io=direct only the writer's -- and the hook hands that thread over to the profiler.
    """
    profiler = cProfile.Profile()

    def start_profiler(*_event: object) -> None:
        sys.setprofile(None)
        profiler.enable()

    threading.setprofile(start_profiler)
    try:
        measure(next(variant for variant in VARIANTS if variant.label == OURS_DIRECT), snapshots, folder)
    finally:
        threading.setprofile(None)
    profiler.disable()  # the writer thread has ended (closed and joined): its profile is complete
    return pstats.Stats(profiler)


def format_profile(stats: pstats.Stats, snapshots: int) -> str:
    """Writer-thread time per bucket and the top functions, as Markdown."""
    rows = [
        (own_s, file, function)
        for (file, _line, function), (_calls, _primitive, own_s, _cumulative, _callers) in stats.stats.items()
    ]
    total_s = sum(own_s for own_s, _file, _function in rows)
    buckets: dict[str, float] = dict.fromkeys([label for label, _test in PROFILE_BUCKETS] + [OTHER_BUCKET], 0.0)
    for own_s, file, function in rows:
        label = next((label for label, test in PROFILE_BUCKETS if test(file, function)), OTHER_BUCKET)
        buckets[label] += own_s
    lines = [
        f"Writer thread under cProfile, io=direct, {snapshots} snapshots: {total_s:.3f} s "
        f"({total_s / snapshots * 1e6:.0f} µs per snapshot, profiler overhead included).",
        "",
        "| Where the writer thread's time goes | s | share | µs per snapshot |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in sorted(buckets.items(), key=lambda item: -item[1]):
        lines.append(f"| {label} | {seconds:.3f} | {seconds / total_s:.0%} | {seconds / snapshots * 1e6:.1f} |")
    lines += ["", "| Top functions by own time | calls | own s | share |", "|---|---:|---:|---:|"]
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:PROFILE_TOP]
    for (file, line, function), (_calls, primitive_calls, own_s, _cumulative, _callers) in top:
        where = function if file == "~" else f"{Path(file).name}:{line}({function})"
        lines.append(f"| `{where}` | {primitive_calls} | {own_s:.3f} | {own_s / total_s:.0%} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ reporting
@dataclass(frozen=True)
class Summary:
    """Medians over rounds for one variant on one file system."""

    snapshots_per_s: float
    records_per_s: float
    mb_per_s: float
    producer_us: dict[str, float]  # p50, p99, mean

    @property
    def wall_us_per_snapshot(self) -> float:
        return 1e6 / self.snapshots_per_s


def summarize(measurements: Sequence[Measurement]) -> Summary:
    return Summary(
        snapshots_per_s=statistics.median(m.snapshots_per_s for m in measurements),
        records_per_s=statistics.median(m.records_per_s for m in measurements),
        mb_per_s=statistics.median(m.mb_per_s for m in measurements),
        producer_us=median_per_key([m.producer_us for m in measurements]),
    )


def median_per_key(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key by key median of several dicts with the same keys."""
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


def format_table(summaries: dict[str, Summary], paced_labels: set[str]) -> str:
    lines = [
        "| Variant | snapshots/s | records/s | MB/s | producer µs per snapshot p50 | p99 | mean |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, summary in summaries.items():
        producer = summary.producer_us
        throughput = (
            "— | — | —" if label in paced_labels
            else f"{summary.snapshots_per_s:,.0f} | {summary.records_per_s:,.0f} | {summary.mb_per_s:.1f}"
        )
        lines.append(
            f"| {label} | {throughput} | {producer['p50']:.1f} | {producer['p99']:.1f} | {producer['mean']:.1f} |"
        )
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def format_findings(summaries: dict[str, Summary]) -> tuple[str, bool]:
    """Ratios and targets as Markdown bullets; also whether every target is met."""
    direct, aiofiles = summaries[OURS_DIRECT], summaries[OURS_AIOFILES]
    raw, naive = summaries[RAW_ORJSON], summaries[NAIVE_JSON]
    paced_direct, paced_aiofiles = summaries[OURS_DIRECT + PACED], summaries[OURS_AIOFILES + PACED]
    share_of_raw = direct.records_per_s / raw.records_per_s
    faster, slower = ("direct", "aiofiles") if direct.records_per_s >= aiofiles.records_per_s else ("aiofiles", "direct")
    speedup = max(direct.records_per_s, aiofiles.records_per_s) / min(direct.records_per_s, aiofiles.records_per_s)
    worst_p99 = max(direct.producer_us["p99"], paced_direct.producer_us["p99"])
    latency_ok = worst_p99 <= SUBMIT_P99_TARGET_US
    throughput_ok = share_of_raw >= THROUGHPUT_TARGET_FRACTION
    lines = [
        f"- Ours (io=direct) reaches {share_of_raw:.0%} of the raw limit (b) in records/s; "
        f"io=aiofiles {aiofiles.records_per_s / raw.records_per_s:.0%}.",
        f"- io backend: **{faster}** is {speedup:.2f}x as fast as {slower} (burst records/s: "
        f"direct {direct.records_per_s:,.0f}, aiofiles {aiofiles.records_per_s:,.0f}). "
        f"Paced submit p99: direct {paced_direct.producer_us['p99']:.1f} µs, "
        f"aiofiles {paced_aiofiles.producer_us['p99']:.1f} µs.",
        f"- Producer-thread time per snapshot, mean: (c) naive json.dump "
        f"{naive.producer_us['mean']:,.0f} µs = {naive.producer_us['mean'] / direct.producer_us['mean']:,.0f}x "
        f"our submit ({direct.producer_us['mean']:.1f} µs burst, {paced_direct.producer_us['mean']:.1f} µs paced); "
        f"(b) raw orjson {raw.producer_us['mean']:,.0f} µs = "
        f"{raw.producer_us['mean'] / direct.producer_us['mean']:,.0f}x.",
        f"- Target submit p99 <= {SUBMIT_P99_TARGET_US:.0f} µs (io=direct, burst "
        f"{direct.producer_us['p99']:.1f} µs, paced {paced_direct.producer_us['p99']:.1f} µs): {_met(latency_ok)}.",
        f"- Target ours >= {THROUGHPUT_TARGET_FRACTION:.0%} of (b) throughput ({share_of_raw:.0%}): "
        f"{_met(throughput_ok)}.",
    ]
    return "\n".join(lines), latency_ok and throughput_ok


def format_header(command: str, scale: Scale, bases: Sequence[Path], load_before: float, snapshot_bytes: int) -> str:
    file_systems = "; ".join(f"`{base}`: {file_system_of(base).describe()}" for base in bases)
    return "\n".join([
        *header_lines(SECTION_HEADING, command, load_before),
        f"- File systems: {file_systems}",
        f"- Python {platform.python_version()}, orjson {orjson.__version__}, numpy {np.__version__}, "
        f"aiofiles {version('aiofiles')}",
        f"- Workload: {scale.snapshots} snapshots per variant and round, each a file of {NUM_ENVS} episode "
        f"records with full robot state ({snapshot_bytes / 1000:.1f} kB with orjson); {scale.rounds} rounds, "
        f"variants interleaved in an order rotated each round; every figure is the median over rounds. "
        f"Throughput runs from the first save call until every file is stored (for ours: all submits, "
        f"then `flush()`; queue holds every snapshot, policy block). \"Paced\": after each submit the "
        f"producer spends {PACE_NS // 1000} µs in GIL-holding Python work, so the writer thread runs "
        f"concurrently; paced throughput is set by the pace and not shown.",
        "- Producer µs: time the producer thread spends in one save call (ours: `submit`; "
        "(b) and (c): the whole dump and write).",
    ])


# ------------------------------------------------------------------ segment format
SEGMENT_HEADING = "## Writer throughput, segment format (bench_writer --format jsonl.zst)"
SEGMENT_RECORDS_TARGET = 100_000  # episode records/s, sustained
SEGMENT_BYTES_TARGET = 60  # bytes per episode record on disk
SEGMENT_BATCH = 64  # snapshots per frame, in the raw loop as in the writer (its default batch_size)
SEGMENT_SCALE = {False: Scale(snapshots=20_000, rounds=3), True: Scale(snapshots=300, rounds=2)}


def make_seed_snapshots(count: int, seed: int = 0) -> list[Snapshot]:
    """``count`` snapshots of ``NUM_ENVS`` records in the seed README's episode layout (without
    the full robot state), values from a seeded RNG: full-precision floats, as training writes them."""
    rng = np.random.default_rng(seed)
    snapshots = []
    for index in range(count):
        x, y, z, vx, remaining, progress, stability = rng.random((NUM_ENVS, 7)).T.tolist()
        steps = rng.integers(0, 1000, NUM_ENVS).tolist()
        episodes = index // 3 + 1
        snapshots.append([{
            "timestep": (index + 1) * SAVE_FREQUENCY, "env_id": env_id, "episode_count": episodes,
            "success_count": episodes // 2, "success_rate": (episodes // 2) / episodes,
            "detailed_info": {
                "episode_info": {"current_step": steps[env_id], "time_remaining": 20.0 * remaining[env_id]},
                "robot_state": {"position": {"x": x[env_id], "y": y[env_id], "z": 0.3 + z[env_id]},
                                "velocity": {"linear": [vx[env_id], 0.0, 0.0]}},
                "performance_metrics": {"episode_progress": progress[env_id], "stability_score": stability[env_id]},
            },
        } for env_id in range(NUM_ENVS)])
    return snapshots


@dataclass
class SegmentRun:
    seconds: float
    disk_bytes: int
    json_bytes: int  # the JSON lines before compression
    records: int

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.json_bytes / self.seconds / 1e6

    @property
    def bytes_per_record(self) -> float:
        return self.disk_bytes / self.records


def run_ours_segments(snapshots: Sequence[Snapshot], folder: Path) -> SegmentRun:
    """SnapshotWriter(format="jsonl.zst"): every submit, then flush and close (segments published)."""
    writer = SnapshotWriter(folder, format="jsonl.zst", queue_size=len(snapshots))
    started = time.perf_counter()
    for records in snapshots:
        writer.submit(EPISODES, records)
    stats = writer.close(timeout=600)
    seconds = time.perf_counter() - started
    if stats["written"] != len(snapshots):
        raise RuntimeError(f"SnapshotWriter wrote {stats['written']} of {len(snapshots)} snapshots: {stats}")
    segments = list((folder / EPISODES).iterdir())
    json_bytes = sum(len(line) + 1 for path in segments for line in decode_segment(path.read_bytes()).lines)
    return SegmentRun(seconds, sum(path.stat().st_size for path in segments), json_bytes,
                      len(snapshots) * len(snapshots[0]))


def run_raw_segments(snapshots: Sequence[Snapshot], folder: Path) -> SegmentRun:
    """The raw limit: orjson lines, one zstd frame (at the segment format's level) per
    ``SEGMENT_BATCH`` snapshots, appended with ``os.write`` to one file, in this thread;
    no metadata, queue or checks."""
    folder.mkdir(parents=True)
    path = folder / "raw.jsonl.zst"
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True)
    json_bytes = 0
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for start in range(0, len(snapshots), SEGMENT_BATCH):
            text = b"".join([orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                             for records in snapshots[start:start + SEGMENT_BATCH]])
            json_bytes += len(text)
            os.write(fd, compressor.compress(text))
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    return SegmentRun(seconds, path.stat().st_size, json_bytes, len(snapshots) * len(snapshots[0]))


SEGMENT_VARIANTS: dict[str, Callable[[Sequence[Snapshot], Path], SegmentRun]] = {
    "ours: SnapshotWriter format=jsonl.zst": run_ours_segments,
    "raw: orjson + zstd frame + os.write (one thread)": run_raw_segments,
}


def run_and_remove(run: Callable[[Sequence[Snapshot], Path], SegmentRun], snapshots: Sequence[Snapshot],
                   folder: Path) -> SegmentRun:
    """One variant's run into ``folder``, which is removed afterwards."""
    try:
        return run(snapshots, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def segment_benchmark(scale: Scale, base: Path, layouts: dict[str, list[Snapshot]]) -> str:
    """Interleaved rounds of both variants for each record layout; the Markdown table."""
    lines = ["| Records | Variant | episode records/s | MB/s (JSON) | bytes/record on disk | vs raw |",
             "|---|---|---:|---:|---:|---:|"]
    findings = []
    work = Path(tempfile.mkdtemp(prefix="rtsave-bench-segments-", dir=base))
    try:
        for layout, snapshots in layouts.items():
            for label, run in SEGMENT_VARIANTS.items():  # warm-up, not counted: the process's first round is slower
                run_and_remove(run, snapshots, work / f"{layout[:4]}-warm-up-{label[:3]}")
            runs: dict[str, list[SegmentRun]] = {label: [] for label in SEGMENT_VARIANTS}
            for round_index in range(scale.rounds):
                order = list(SEGMENT_VARIANTS.items())[:: 1 if round_index % 2 == 0 else -1]
                for label, run in order:
                    folder = work / f"{layout[:4]}-{round_index}-{len(runs[label])}-{label[:3]}"
                    runs[label].append(run_and_remove(run, snapshots, folder))
                    print(f"  segments {layout}, round {round_index + 1}/{scale.rounds}: {label} done", file=sys.stderr)
            medians = {label: {field: statistics.median(getattr(run, field) for run in label_runs)
                               for field in ("records_per_s", "mb_per_s", "bytes_per_record")}
                       for label, label_runs in runs.items()}
            ours, raw = (medians[label] for label in SEGMENT_VARIANTS)
            round_ratios = sorted(mine.records_per_s / theirs.records_per_s
                                  for mine, theirs in zip(*runs.values()))
            for label, median in medians.items():
                lines.append(f"| {layout} | {label} | {median['records_per_s']:,.0f} | {median['mb_per_s']:.1f} | "
                             f"{median['bytes_per_record']:.1f} | {median['records_per_s'] / raw['records_per_s']:.0%} |")
            findings.append(
                f"- {layout}: {ours['records_per_s']:,.0f} records/s (target >= {SEGMENT_RECORDS_TARGET:,}: "
                f"{_met(ours['records_per_s'] >= SEGMENT_RECORDS_TARGET)}); "
                f"{ours['records_per_s'] / raw['records_per_s']:.0%} of raw (target >= "
                f"{THROUGHPUT_TARGET_FRACTION:.0%}: {_met(ours['records_per_s'] >= THROUGHPUT_TARGET_FRACTION * raw['records_per_s'])}; "
                f"per-round ratios {round_ratios[0]:.1%} to {round_ratios[-1]:.1%}); "
                f"{ours['bytes_per_record']:.1f} bytes/record (target <= {SEGMENT_BYTES_TARGET}: "
                f"{_met(ours['bytes_per_record'] <= SEGMENT_BYTES_TARGET)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join(lines + [""] + findings)


def segment_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scale = chosen_scale(SEGMENT_SCALE[args.quick], args.rounds)
    base = (args.bases or default_bases())[0]
    load_before = os.getloadavg()[0]
    layouts = {"seed episode layout": make_seed_snapshots(scale.snapshots),
               "full robot state": make_snapshots(scale.snapshots)}
    sizes = {layout: len(orjson.dumps(snapshots[0][0], option=orjson.OPT_SERIALIZE_NUMPY))
             for layout, snapshots in layouts.items()}
    gc.collect()
    gc.freeze()
    try:
        table = segment_benchmark(scale, base, layouts)
    finally:
        gc.unfreeze()
    command = " ".join(["python -m benchmarks.bench_writer", *argv])
    header = "\n".join([
        *header_lines(SEGMENT_HEADING, command, load_before),
        f"- File system: `{base}`: {file_system_of(base).describe()}; Python {platform.python_version()}, "
        f"orjson {orjson.__version__}, zstandard {zstandard.__version__}",
        f"- Workload: {scale.snapshots} snapshots of {NUM_ENVS} episode records per variant and round "
        f"(one record: " + ", ".join(f"{layout} {size} bytes of JSON" for layout, size in sizes.items())
        + f"); one warm-up round per record layout and variant, not counted (in a fresh process the first "
        f"round ran 15-35 % slower than the next ones), then {scale.rounds} rounds, the variants' order "
        f"alternating; medians over rounds. Ours: every "
        f"`submit`, then `close()` (all segments published); raw: one frame per {SEGMENT_BATCH} snapshots "
        f"(the writer's default batch) appended to one file. Floats are full-precision random values.",
    ])
    return publish(header + "\n\n" + table + "\n", args.results, append=not args.no_append)


# ----------------------------------------------------------------------------- CLI
def default_bases() -> list[Path]:
    """The temp folder's file system, and a tmpfs at /dev/shm when there is one."""
    bases = [Path(tempfile.gettempdir())]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        bases.append(shm)
    return bases


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_writer",
        description="Writer throughput and submit latency: SnapshotWriter vs raw orjson vs json.dump.",
    )
    add_run_options(parser, f"smoke run: {QUICK_SCALE.snapshots} snapshots, {QUICK_SCALE.rounds} rounds")
    parser.add_argument("--dir", dest="bases", metavar="DIR", type=Path, action="append",
                        help="base folder to write into (repeatable); default: the temp folder and /dev/shm")
    parser.add_argument("--keep-files", action="store_true", help="leave the written files in place")
    parser.add_argument("--profile", action="store_true",
                        help="profile the writer thread even when every target is met")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help=f"interleaved rounds (default: {FULL_SCALE.rounds} for json, "
                             f"{SEGMENT_SCALE[False].rounds} for jsonl.zst; {QUICK_SCALE.rounds} with --quick)")
    parser.add_argument("--format", choices=("json", "jsonl.zst"), default="json",
                        help="json: the file-per-save comparison (default); jsonl.zst: the segment format "
                             "against a raw orjson + zstd append loop")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def chosen_scale(default: Scale, rounds: int | None) -> Scale:
    """``default`` with its rounds replaced by ``--rounds`` when given."""
    return default if rounds is None else replace(default, rounds=rounds)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its Markdown section and append it to RESULTS.md."""
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.format == "jsonl.zst":
        return segment_main(args, argv)
    scale = chosen_scale(QUICK_SCALE if args.quick else FULL_SCALE, args.rounds)
    bases = args.bases or default_bases()
    load_before = os.getloadavg()[0]
    snapshots = make_snapshots(scale.snapshots)
    snapshot_bytes = len(orjson.dumps(snapshots[0], option=orjson.OPT_SERIALIZE_NUMPY))
    gc.collect()
    gc.freeze()  # the pre-built snapshots are not the writer's garbage: keep them out of GC passes
    parts: list[str] = []
    try:
        for base in bases:
            work = Path(tempfile.mkdtemp(prefix="rtsave-bench-writer-", dir=base))
            try:
                print(f"{base}: writing into {work}", file=sys.stderr)
                results = run_rounds(snapshots, work, scale.rounds, args.keep_files)
                summaries = {label: summarize(runs) for label, runs in results.items()}
                findings, all_met = format_findings(summaries)
                step_costs = writer_step_costs_us(snapshots, work / "steps")
                parts += [f"### `{base}` ({file_system_of(base).fs_type})", "",
                          format_table(summaries, {v.label for v in VARIANTS if v.paced}), "", findings, "",
                          format_step_costs(step_costs, summaries[OURS_DIRECT], summaries[RAW_ORJSON]), ""]
                if args.profile or not all_met:
                    profile = profile_writer_thread(snapshots, work / "profile")
                    parts += [format_profile(profile, len(snapshots)), ""]
            finally:
                if not args.keep_files:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        gc.unfreeze()
    command = " ".join(["python -m benchmarks.bench_writer", *argv])
    section = format_header(command, scale, bases, load_before, snapshot_bytes) + "\n\n" + "\n".join(parts)
    return publish(section, args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
