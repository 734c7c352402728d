"""Reliability benchmark: the torture scenarios of ``tests/test_reliability.py`` at the long counts.

Run ``python -m benchmarks.bench_reliability`` (about 30 minutes on 2 cores) or add
``--quick`` for the CI counts; ``--only round_one|slow_disk|round_two`` runs one group. The
scenarios are those of ``tests/support/reliability_scenarios.py`` (the first suite and
the slow store: training speed with saving every step on a 20 ms store, per format and
policy) and ``tests/support/round_two_scenarios.py`` (issue 12); this script only runs
them and tabulates what
they measured: snapshots submitted, written, dropped, failed (counted), lost and torn
files per scenario, and the distribution of what a SIGKILL loses. The Markdown section
is printed and appended to ``benchmarks/RESULTS.md`` (``--no-append`` to only print).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from benchmarks.reporting import add_run_options, cpu_model, publish
from tests.support import reliability_scenarios as scenarios
from tests.support import round_two_scenarios as round_two
from tests.support.reliability_scenarios import Tally, torn_count, trials

SECTION_HEADING = "## Reliability (bench_reliability)"
GROUPS = ("round_one", "slow_disk", "round_two")  # --only: the first suite's scenarios, the slow store, issue 12


@contextlib.contextmanager
def tmpfs_mounts(root: Path) -> Iterator[Callable[[str], Path]]:
    """A function mounting a fresh tmpfs with the given options under ``root``; all unmounted after."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        target = root / f"mnt-{uuid.uuid4().hex[:8]}"
        target.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True, capture_output=True)
        mounted.append(target)
        return target

    try:
        yield mount
    finally:
        for target in mounted:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


@dataclass
class RoundTwoRow(Tally):
    """One row of the issue-12 table: a scenario's runs added up, and the promises they broke."""

    problems: list[str] = field(default_factory=list)

    def add_outcome(self, outcome: round_two.RoundTwoOutcome) -> None:
        self.add(outcome.submitted, outcome.written, outcome.dropped, outcome.failed, outcome.lost, 0)
        self.problems += outcome.problems


def round_two_cases() -> Iterator[tuple[str, Callable[[Path], round_two.RoundTwoOutcome]]]:
    """(row name, a function of a fresh folder) for every issue-12 scenario."""
    for raised in round_two.HOOK_RAISES:
        for where in round_two.HOOK_PLACES:
            place = {"hook": "an on_written hook", "awaited hook": "an awaited on_written hook",
                     "encoder": "an attachment encoder", "records": "a records function"}[where]
            yield (f"6. {raised} from {place}",
                   lambda folder, raised=raised, where=where: round_two.run_hook_raising(folder, raised, where))
    yield ("6. a sink that kills the writer thread (the save in its hands is lost, and reported)",
           round_two.run_dying_writer)
    for format_name in ("json", "jsonl.zst"):
        yield (f"5. a dangling symlink as a category folder, {format_name}",
               lambda folder, format_name=format_name: round_two.run_dangling_category(folder, format_name))
    for removed_before in round_two.VANISHING_BEFORE:
        yield (f"2. `rm -rf` of the save_dir before a checkpoint's {removed_before}",
               lambda folder, removed_before=removed_before: round_two.run_vanishing_save_dir(folder, removed_before))
    keys = trials(*round_two.RACE_KEYS)
    for sink_class in round_two.RACE_SINKS:
        yield (f"3. two processes racing for {keys:,} names, {sink_class} (failed: the name was taken)",
               lambda folder, sink_class=sink_class: round_two.run_name_race(folder, sink_class, keys))
    for mode in (*round_two.PRODUCER_ENDS, "chained_sigterm"):
        yield (f"4. a slow-disk child ends by {mode}",
               lambda folder, mode=mode: round_two.run_slow_producer_end(folder, mode))
    for name in round_two.SIGNALS_IN_EXIT_DRAIN:
        yield f"7. {name}", lambda folder, name=name: round_two.run_signal_in_exit_drain(folder, name)
    for name in round_two.ODD_VALUE_CASES:
        yield f"8. PPO on an env reporting {name}", lambda folder, name=name: round_two.run_odd_env_value(folder, name)
    for name in round_two.SERIALIZER_CASES:
        yield f"9. a record holding {name}", lambda folder, name=name: round_two.run_serializer_value(folder, name)
    yield "14. retention through a symlink leaving the save_dir", round_two.run_symlinked_retention
    yield "1, 15. two live writers in one folder, one paused mid-checkpoint", round_two.run_two_live_writers
    yield "1. retention after a finished writer", round_two.run_retention_after_a_finished_writer


def run_round_two(work: Path) -> list[RoundTwoRow]:
    """Every issue-12 scenario, ``REPEATS`` times each, in a fresh folder each time."""
    rows = []
    for number, (name, run) in enumerate(round_two_cases()):
        row = RoundTwoRow(name)
        for repeat in range(trials(*round_two.REPEATS)):
            folder = work / "round_two" / f"{number:02d}-{repeat}"
            folder.mkdir(parents=True)
            row.add_outcome(run(folder))
            shutil.rmtree(folder, ignore_errors=True)
        rows.append(row)
    return rows


def run_slow_disk(work: Path) -> tuple[list[Tally], list[str]]:
    """The slow-store scenario for every format and policy: rows and notes."""
    rows: list[Tally] = []
    notes: list[str] = []
    timesteps = trials(*scenarios.SLOW_DISK_TIMESTEPS)
    for format_name, policy in scenarios.SLOW_DISK_CASES:
        slow = scenarios.run_slow_disk(work / "slow_disk" / f"{format_name}-{policy}", format_name, policy, timesteps)
        stats = slow.stats
        row = Tally(f"slow store ({scenarios.SLOW_DISK_SECONDS_PER_STORE * 1000:g} ms), PPO {scenarios.SLOW_DISK_ENVS} "
                    f"envs, save every step, {format_name}, {policy}")
        row.add(stats["submitted"], slow.saves_read_back, stats["dropped"], stats["failed"], slow.lost, slow.torn)
        rows.append(row)
        notes.append(f"slow store, {format_name}, {policy}: training {slow.steps_per_second:,.0f} env-steps/s with "
                     f"saving vs {slow.baseline_steps_per_second:,.0f} without in the same run = **{slow.ratio:.2f}x** "
                     f"(target >= 0.8x); {stats['stores']:,} stores for {stats['written']:,} saves; "
                     f"{stats['dropped']:,} dropped, all counted; peak queue {stats['peak_queue_depth']:,}; "
                     f"peak stores in flight {slow.peak_store_concurrency}; records read back in submit order: "
                     f"{'yes' if slow.in_order else '**no**'}.")
    return rows, notes


def run_all(work: Path) -> tuple[list[Tally], list[str]]:
    """The first suite's scenarios at the configured counts: the table rows and the notes under it."""
    rows: list[Tally] = []
    notes: list[str] = []

    for kind, counts in (("stream", scenarios.SIGKILL_STREAM_TRIALS), ("train", scenarios.SIGKILL_TRAIN_TRIALS)):
        kills = scenarios.run_sigkill_trials(kind, work / "sigkill", trials(*counts), seed=len(kind))
        row = Tally(f"SIGKILL at a random moment, {'streaming' if kind == 'stream' else 'PPO training'} child")
        for trial in kills:
            row.add(trial.submitted, trial.written, trial.dropped, 0, trial.lost,
                    torn_count(trial.disk) + len(trial.temps_after_restart) + len(trial.disk.strays))
        rows.append(row)
        low, median, high = scenarios.lost_distribution(kills)
        bounds = sorted({trial.loss_bound for trial in kills})
        notes.append(f"SIGKILL, {kind} child: snapshots lost per kill min {low} / median {median:g} / max {high} "
                     f"(bound: twice the queue (a queue's worth taken by a coalescing drain, and the queue "
                     f"refilled) + one batch + the stores in flight + the submit in flight = {bounds[0]}); temps left after "
                     f"a new writer started: {sum(len(trial.temps_after_restart) for trial in kills)}; "
                     f"orphan checkpoint attachments: {sum(len(trial.disk.orphans) for trial in kills)}.")

    rng = random.Random(0)
    for end, expected in scenarios.GRACEFUL_ENDS.items():
        row = Tally(f"graceful end: {end}")
        statuses = []
        for repeat in range(trials(*scenarios.GRACEFUL_REPEATS)):
            outcome = scenarios.run_graceful_end(end, work / "graceful" / f"{end.replace(' ', '_')}-{repeat}", rng)
            row.add(outcome.submitted, outcome.written, outcome.dropped, outcome.failed, outcome.lost,
                    torn_count(outcome.disk))
            statuses.append(outcome.returncode)
        rows.append(row)
        if any(status != expected.returncode for status in statuses):
            notes.append(f"graceful end {end}: exit statuses {statuses}, expected {expected.returncode}.")

    for end in scenarios.STALLED_ENDS:
        stalled = scenarios.run_stalled_disk_exit(end, work / "stalled" / end.replace(" ", "_").replace(",", ""))
        pending = f", {stalled.stats['pending']} snapshot(s) still pending" if stalled.stats else ""
        verdict = "exited" if stalled.exited else f"still running after {scenarios.STALLED_EXIT_BOUND:g} s (killed)"
        notes.append(f"disk that never answers, {end}: {verdict} (exit status {stalled.returncode}{pending}).")

    with tmpfs_mounts(work / "mounts") as mount:
        for trouble in scenarios.DISK_TROUBLES:
            outcome = scenarios.run_disk_trouble(trouble, mount)
            stats = outcome.stats
            row = Tally(f"{trouble} until timestep {scenarios.TROUBLE_RELEASE_TIMESTEP}, then recovers")
            row.add(stats["submitted"], stats["written"], stats["dropped"], stats["failed"], stats["pending"],
                    torn_count(outcome.disk) + len(outcome.disk.temps))
            rows.append(row)
            notes.append(f"{trouble}: {len(outcome.error_logs)} ERROR line(s) for {stats['failed']} failed snapshots; "
                         f"saved after recovery: " + ", ".join(f"{category} {len(timesteps)}" for category, timesteps
                                                              in outcome.timesteps_after_release.items()) + ".")

    examples = trials(*scenarios.FUZZ_EXAMPLES)
    tally = scenarios.FuzzTally()
    failure = ""
    try:
        scenarios.fuzz_through_writer(work / "fuzz", examples, tally)
    except AssertionError as error:  # hypothesis found (and shrank) a record that does not come back faithfully
        failure = str(error).splitlines()[0]
    row = Tally(f"hypothesis records through a real writer ({examples} examples)")
    row.add(tally.examples, tally.written, 0, tally.examples - tally.written, 0, tally.torn, trials=tally.examples)
    rows.append(row)
    notes.append(f"hypothesis: {tally.placeholders} marked placeholders, all counted; records not faithful: "
                 f"{tally.problems}{' -- first: ' + failure if failure else ''}.")

    sandbox, cwd = scenarios.cli_sandbox(work / "names")
    escapes = []
    for name, run_name in scenarios.hostile_run_names(sandbox).items():
        outcome = scenarios.run_cli(sandbox, cwd, ["--run_name", run_name])
        outside = outcome.outside(cwd / "models")
        if outside or outcome.thread_errors:
            escapes.append(f"{name} ({len(outside)} path(s) outside models/, thread errors {len(outcome.thread_errors)})")
    notes.append(f"hostile --run_name values: {len(escapes)} of {len(scenarios.hostile_run_names(sandbox))} "
                 f"escaped models/ or crashed the writer thread: {'; '.join(escapes) or 'none'}.")

    seconds = trials(*scenarios.LOAD_SECONDS)
    for policy in scenarios.LOAD_POLICIES:
        load = scenarios.run_load(work / "load" / policy, policy, seconds)
        stats = load.stats
        row = Tally(f"{scenarios.LOAD_PRODUCERS} producers flat out, queue {scenarios.LOAD_QUEUE_SIZE}, {policy}, {seconds} s")
        row.add(stats["submitted"], stats["written"], stats["dropped"], stats["failed"], load.lost,
                load.torn + load.duplicates + load.hung_producers)
        rows.append(row)
        notes.append(f"load {policy}: peak RSS {load.peak_rss / 2**20:.1f} MiB "
                     f"(+{(load.peak_rss - load.baseline_rss) / 2**20:.1f} MiB over the start), "
                     f"hung producers {load.hung_producers}.")
        shutil.rmtree(work / "load" / policy)  # up to ~10^5 files per policy

    reader_seconds = trials(*scenarios.READER_SECONDS)
    readers = scenarios.run_concurrent_readers(work / "readers" / "save", reader_seconds, work / "readers")
    row = Tally(f"a reader thread and a reader process during {reader_seconds} s of writes")
    row.add(readers.written, readers.written, 0, 0, 0, len(readers.thread_problems) + len(readers.process_problems))
    rows.append(row)
    notes.append(f"readers: {readers.thread_checked} file reads by the thread, {readers.process_checked} by the "
                 f"process, partial files seen: {len(readers.thread_problems) + len(readers.process_problems)}.")
    return rows, notes


def machine_description() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}; Python {platform.python_version()}, "
            f"stable-baselines3 {version('stable-baselines3')}, gymnasium {version('gymnasium')}, "
            f"torch {version('torch')}, numpy {version('numpy')}, orjson {version('orjson')}, "
            f"hypothesis {version('hypothesis')}")


def code_revision() -> str:
    """The commit the scenarios ran on, and whether the tree had changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(scenarios.PROJECT_ROOT), *args], capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip()
    if not commit:
        return "not a git checkout"
    return commit + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no").strip() else
                     ", no uncommitted changes")


def render_section(command: str, date: str, minutes: float, rows: list[Tally], notes: list[str],
                   round_two_rows: list[RoundTwoRow]) -> str:
    counts = (f"SIGKILL {trials(*scenarios.SIGKILL_STREAM_TRIALS)} streaming + "
              f"{trials(*scenarios.SIGKILL_TRAIN_TRIALS)} training children; graceful ends x"
              f"{trials(*scenarios.GRACEFUL_REPEATS)}; {trials(*scenarios.FUZZ_EXAMPLES)} hypothesis examples; "
              f"load {trials(*scenarios.LOAD_SECONDS)} s per policy; slow store "
              f"{trials(*scenarios.SLOW_DISK_TIMESTEPS):,} timesteps per training; readers "
              f"{trials(*scenarios.READER_SECONDS)} s")
    lines = [
        SECTION_HEADING, "",
        f"- Command: `{command}`",
        f"- Date: {date} (run took {minutes:.1f} min)",
        f"- Machine: {machine_description()}",
        f"- Code: {code_revision()}",
        f"- What was run: {counts} ({'long counts, RTSAVE_LONG=1' if scenarios.long_run() else 'CI counts'}).",
        "- Unit: one snapshot = one `submit()` = one file (a JSON array of records) or, in `jsonl.zst`, one segment line. *lost* = submitted - dropped "
        "- failed - written: records that were accepted but are neither on disk nor counted. *torn* = final-named "
        "files that do not read back whole, listed checkpoints that do not load, and (SIGKILL) temp files a new "
        "writer did not remove. For SIGKILL, checkpoints are left out of the counts (retention deletes them) but "
        "every listed one is loaded; *submitted* includes the submit the kill may have cut short.",
        "- Promised zeros: torn everywhere; lost and dropped for graceful ends (policy block); lost for disk "
        "trouble, load and readers. A SIGKILL may lose what is still queued (bounded below).",
        "",
    ]
    if rows:
        lines += ["| Scenario | trials | snapshots submitted | written | dropped | failed (counted) | lost | torn files |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {row.scenario} | {row.trials:,} | {row.submitted:,} | {row.written:,} | {row.dropped:,} | "
                  f"{row.failed:,} | {row.lost:,} | {row.torn:,} |" for row in rows]
        lines += ["", *(f"- {note}" for note in notes), ""]
    if round_two_rows:
        lines += [
            "Issue 12 (round two) scenarios, `tests/support/round_two_scenarios.py`, each in a fresh folder; "
            "*broken promises* counts what a scenario found wrong (every one is listed below the table).", "",
            "| Scenario (issue 12 item) | trials | submitted | written | dropped | failed (counted) | lost "
            "| broken promises |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {row.scenario} | {row.trials:,} | {row.submitted:,} | {row.written:,} | {row.dropped:,} | "
                  f"{row.failed:,} | {row.lost:,} | {len(row.problems):,} |" for row in round_two_rows]
        broken = [f"- {row.scenario}: {problem}" for row in round_two_rows for problem in row.problems]
        lines += ["", *(broken or ["- No promise broken."]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser, "the CI counts instead of the long ones")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--only", choices=GROUPS, default=None, help="run one group of scenarios only")
    args = parser.parse_args(argv)
    os.environ[scenarios.LONG_RUN_VARIABLE] = "0" if args.quick else "1"
    command = ("python -m benchmarks.bench_reliability" + (" --quick" if args.quick else "")
               + (f" --only {args.only}" if args.only else ""))
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    started = time.monotonic()
    rows: list[Tally] = []
    notes: list[str] = []
    round_two_rows: list[RoundTwoRow] = []
    with tempfile.TemporaryDirectory(prefix="bench_reliability_", dir=args.dir) as work:
        if args.only in (None, "round_one"):
            rows, notes = run_all(Path(work))
        if args.only in (None, "slow_disk"):
            slow_rows, slow_notes = run_slow_disk(Path(work))
            rows, notes = rows + slow_rows, notes + slow_notes
        if args.only in (None, "round_two"):
            round_two_rows = run_round_two(Path(work))
    section = render_section(command, date, (time.monotonic() - started) / 60, rows, notes, round_two_rows)
    return publish(section, args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
