"""The reliability scenarios of issue 12 ("round two"), shared by ``tests/test_reliability_round_two.py``,
``tests/test_exit_hook.py`` and ``benchmarks/bench_reliability.py``.

Each ``run_*`` function drives one scenario and returns a :class:`RoundTwoOutcome`: the
writer's counts and ``problems``, one line per broken promise (empty when every promise
held). The tests assert that there are none; the benchmark counts them. (Items 9-11 and 13,
serializer values, resume and checkpoint safety, are tested in their own files.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from rtsave_async import RealTimeSavingCallback, load_records, names
from rtsave_async.checkpoints.retention import prune_checkpoints
from rtsave_async.formats.serialize import PLACEHOLDER_KEY
from rtsave_async.names import writer_tag
from rtsave_async.readers.run import open_run
from rtsave_async.sinks import LocalSink
from rtsave_async.writer import STATS_FILE_NAME
from rtsave_async.writer.snapshot_writer import SnapshotWriter
from tests.support.processes import python_child
from tests.support.reliability_scenarios import captured_writer_errors
from tests.support.sinks import DyingSink, GatedSink, VanishingRootSink

CHILD_TIMEOUT = 120.0  # seconds for a child process to finish
REPEATS = (1, 3)  # (CI, long) runs of each scenario in bench_reliability


@dataclasses.dataclass
class RoundTwoOutcome:
    """What one scenario did: counts (as the writer's stats name them) and broken promises."""

    submitted: int = 0
    written: int = 0
    dropped: int = 0
    failed: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, stats: dict[str, Any]) -> RoundTwoOutcome:
        return cls(stats["submitted"], stats["written"], stats["dropped"], stats["failed"])

    def expect(self, holds: bool, problem: str) -> None:
        """Record ``problem`` unless ``holds``."""
        if not holds:
            self.problems.append(problem)

    @property
    def lost(self) -> int:
        return self.submitted - self.written - self.dropped - self.failed


def listed_but_broken(checkpoints: Path) -> list[str]:
    """Attachments a checkpoint JSON lists that are missing or of another size."""
    broken = []
    for listing in checkpoints.glob("*.json"):
        for attachment in orjson.loads(listing.read_bytes())["files"].values():
            path = Path(attachment["path"])
            if not path.exists() or path.stat().st_size != attachment["bytes"]:
                broken.append(f"{listing.name} lists {path.name}, which is missing or of another size")
    return broken


# ---------------------------------------------------------------- item 6: hooks, encoders, a dying sink
HOOK_RAISES = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")
HOOK_PLACES = ("hook", "awaited hook", "encoder", "records")


def run_hook_raising(save_dir: Path, raised_name: str, where: str) -> RoundTwoOutcome:
    """A ``BaseException`` from an ``on_written`` hook, an awaited hook, an attachment
    encoder or a records function; then five ordinary saves, which must all be written."""
    raised: type[BaseException] = {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
                                   "GeneratorExit": GeneratorExit}[raised_name]

    def fail(*_: Any) -> Any:
        raise raised(f"from the {where}")

    async def failing_follow_up() -> None:
        fail()

    submit = {
        "hook": {"records": {"a": 1}, "on_written": fail},
        "awaited hook": {"records": {"a": 1}, "on_written": lambda url: failing_follow_up()},
        "encoder": {"records": {"a": 1}, "attachments": {".bin": fail}},
        "records": {"records": fail, "attachments": {".bin": lambda: b"x"}},
    }[where]
    with SnapshotWriter(save_dir, drain_interval=0) as writer:
        writer.submit("custom", **submit)
        writer.flush(5)
        accepted = [writer.submit("custom", {"after": index}) for index in range(5)]
        writer.flush(5)
        stats = writer.stats()
    outcome = RoundTwoOutcome.of(stats)
    outcome.expect(all(accepted), "a submit after the exception was refused")
    outcome.expect(stats["written"] == 6 - (where in ("encoder", "records")), f"written {stats['written']}")
    outcome.expect(stats["pending"] == 0, f"{stats['pending']} still pending")
    outcome.expect(raised_name in " ".join(stats["errors"]), f"{raised_name} not reported in the errors")
    return outcome


def run_dying_writer(save_dir: Path) -> RoundTwoOutcome:
    """A sink that raises ``SystemExit`` ends the writer thread: submit, flush and stats say so at once."""
    with captured_writer_errors() as errors:
        writer = SnapshotWriter(save_dir, drain_interval=0, sink=DyingSink(LocalSink(save_dir)))
        writer.submit("custom", {"a": 1})
        deadline = time.monotonic() + 5
        while not writer.stats()["writer_died"] and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = not writer.submit("custom", {"a": 2})
        flushed = writer.flush()  # no timeout: must not wait forever
        stats = writer.close()
    outcome = RoundTwoOutcome.of(stats)
    outcome.expect(refused and not flushed, "submit or flush did not say that the thread died")
    outcome.expect(stats["writer_died"] is True, "stats do not say the thread died")
    outcome.expect(stats["failed"] >= 1 and stats["submitted"] == 2, f"failed {stats['failed']}")
    outcome.expect(any("writer thread" in message for message in stats["errors"]), "no error message")
    outcome.expect(any("writer thread" in line for line in errors), "nothing logged")
    return outcome


# ---------------------------------------------------------------- item 5: a dangling symlink as a category
def run_dangling_category(root: Path, format_name: str) -> RoundTwoOutcome:
    """``episodes`` is a dangling symlink: its saves fail (counted, one log line), others are written."""
    save_dir = root / "run"
    save_dir.mkdir(parents=True)
    (save_dir / "episodes").symlink_to(root / "gone")
    with captured_writer_errors() as errors:
        with SnapshotWriter(save_dir, drain_interval=0, format=format_name) as writer:
            for index in range(3):
                writer.submit("episodes", {"episode": index})
                writer.submit("custom", {"index": index})
            flushed = writer.flush(10)
            stats = writer.stats()
    outcome = RoundTwoOutcome.of(stats)
    outcome.expect(not flushed, "flush reported success")
    outcome.expect(stats["failed_by_category"] == {"episodes": 3}, f"failed {stats['failed_by_category']}")
    outcome.expect(stats["written_by_category"] == {"custom": 3}, f"written {stats['written_by_category']}")
    outcome.expect(len(errors) == 1 and "dangling symlink" in errors[0] and str(save_dir / "episodes") in errors[0],
                   f"log lines: {errors}")
    outcome.expect(not (root / "gone").exists(), "the symlink's target was created")
    return outcome


# ---------------------------------------------------------------- item 2: rm -rf in the middle of a checkpoint
VANISHING_BEFORE = (".state.npz", ".json")


def run_vanishing_save_dir(save_dir: Path, removed_before: str) -> RoundTwoOutcome:
    """The save_dir is removed just before a checkpoint's ``removed_before`` file: that
    checkpoint fails (counted), the next one is written, nothing listed is missing."""
    sink = VanishingRootSink(LocalSink(save_dir), removed_before)
    with SnapshotWriter(save_dir, drain_interval=0, sink=sink) as writer:
        writer.submit("checkpoints", lambda files: {"files": files},
                      attachments={".zip": lambda: b"model" * 100, ".state.npz": lambda: b"state"})
        flushed = writer.flush(10)
        writer.submit("checkpoints", lambda files: {"files": files}, attachments={".zip": lambda: b"model"})
        writer.flush(10)
        stats = writer.stats()
    outcome = RoundTwoOutcome.of(stats)
    outcome.expect(sink.removed and not flushed, "the folder was not removed, or flush reported success")
    outcome.expect(stats["failed_by_category"] == {"checkpoints": 1}, f"failed {stats['failed_by_category']}")
    outcome.expect(stats["written_by_category"] == {"checkpoints": 1}, f"written {stats['written_by_category']}")
    outcome.expect("missing" in " ".join(stats["errors"]), "the error does not say what is missing")
    outcome.problems += listed_but_broken(save_dir / "checkpoints")
    return outcome


# ---------------------------------------------------------------- item 3: publishing that cannot overwrite
RACE_SINKS = ("LocalSink", "NoHardLinkLocalSink")
RACE_KEYS = (4000, 20000)  # (CI, long) names both processes try to create
_RACER = """
import asyncio, sys
from rtsave_async.sinks import LocalSink
from tests.support.sinks import NoHardLinkLocalSink

async def race(root, name, keys, sink_class):
    sink = {"LocalSink": LocalSink, "NoHardLinkLocalSink": NoHardLinkLocalSink}[sink_class](root)
    while open(root + "/start").read() != "go":
        await asyncio.sleep(0.001)
    won = []
    for index in range(keys):
        try:
            await sink.create(f"episodes/{index:06d}.json", name.encode())
            won.append(index)
        except FileExistsError:
            pass
    print(" ".join(map(str, won)))

asyncio.run(race(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


def run_name_race(root: Path, sink_class: str, keys: int) -> RoundTwoOutcome:
    """Two processes create the same ``keys`` names at once (with hard links, or on a file
    system without them): each name is won by exactly one, and holds the winner's bytes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "start").write_text("wait")
    racers = {name: python_child(_RACER, str(root), name, str(keys), sink_class) for name in ("first", "second")}
    (root / "start").write_text("go")
    won: dict[str, set[int]] = {}
    outcome = RoundTwoOutcome(submitted=2 * keys)
    for name, racer in racers.items():
        out, err = racer.communicate(timeout=CHILD_TIMEOUT)
        outcome.expect(racer.returncode == 0, f"racer {name} failed: {err[-500:]}")
        won[name] = {int(index) for index in out.split()}
    both = won["first"] & won["second"]
    outcome.written = len(won["first"] | won["second"])
    outcome.failed = outcome.submitted - len(won["first"]) - len(won["second"])  # refused: the name was taken
    outcome.expect(not both, f"{len(both)} name(s) reported created by both (one overwritten)")
    outcome.expect(outcome.written == keys, f"{keys - outcome.written} name(s) created by neither")
    for name, indices in won.items():
        wrong = [index for index in indices if (root / "episodes" / f"{index:06d}.json").read_text() != name]
        outcome.expect(not wrong, f"{len(wrong)} of {name}'s names hold the other's bytes")
    return outcome


# ---------------------------------------------------------------- items 4 and 7: signals at exit
# A child that queues ``count`` snapshots behind a slow disk (2 ms a file), reports how
# many are still queued, then ends as ``mode`` says.
_SLOW_PRODUCER = """
    import os, sys, time, signal
    from rtsave_async import SnapshotWriter
    from rtsave_async.sinks import LocalSink
    from tests.support.sinks import SlowSink

    save_dir, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    SIGNAL_MODES = sys.argv[4].split(",")
    if mode == "chained_sigterm":
        def user_handler(signum, frame):
            open(os.path.join(save_dir, "user_handler_ran"), "w").close()
            sys.exit(7)
        os.makedirs(save_dir, exist_ok=True)
        signal.signal(signal.SIGTERM, user_handler)
    writer = SnapshotWriter(save_dir, queue_size=count, exit_timeout=30, sink=SlowSink(LocalSink(save_dir), 0.002))
    for index in range(count):
        writer.submit("episodes", {"index": index})
    held_count = int(sys.argv[5])
    if held_count:  # then more saves, held back for a batch that never fills: only the exit hooks submit them
        from rtsave_async.writer.held_saves import HeldSaves
        held = HeldSaves(writer, window=3600, max_saves=held_count + 1)
        for index in range(count, count + held_count):
            held.add([("episodes", {"index": index})])
        print("held", len(held), flush=True)
        del held  # the exit hooks keep it
    print("queued", len(writer._queue), flush=True)
    if mode == "raise":
        raise RuntimeError("training crashed")
    if mode == "sys_exit":
        sys.exit(3)
    if mode in SIGNAL_MODES:
        time.sleep(120)
"""
PRODUCER_SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sighup": signal.SIGHUP,
                    "chained_sigterm": signal.SIGTERM}
PRODUCER_ENDS = ("return", "raise", "sys_exit", "sigint", "sigterm", "sighup")
PRODUCER_RETURNCODES = {"return": 0, "raise": 1, "sys_exit": 3, "sigterm": -signal.SIGTERM,
                        "sighup": -signal.SIGHUP, "chained_sigterm": 7}


@dataclasses.dataclass
class ProducerEnd(RoundTwoOutcome):
    returncode: int | None = None
    stderr: str = ""
    still_queued: int = 0


def run_slow_producer_end(save_dir: Path, mode: str, count: int = 300, held: int = 0) -> ProducerEnd:
    """A child queues ``count`` saves behind a slow disk and ends by ``mode`` (a return,
    an exception, ``sys.exit``, SIGINT, SIGTERM, SIGHUP, or SIGTERM with the user's own
    handler): every save is on disk, in order, and ``writer_stats.json`` says so.

    :param held: that many more saves go through a :class:`HeldSaves` that holds all but
        the first of them when the end comes
    """
    child = python_child(_SLOW_PRODUCER, str(save_dir), mode, str(count), ",".join(PRODUCER_SIGNALS), str(held))
    held_line = child.stdout.readline() if held else ""
    queued_line = child.stdout.readline()
    if mode in PRODUCER_SIGNALS:
        child.send_signal(PRODUCER_SIGNALS[mode])
    _, stderr = child.communicate(timeout=CHILD_TIMEOUT)
    count += held
    outcome = ProducerEnd(submitted=count, returncode=child.returncode, stderr=stderr)
    if not queued_line.startswith("queued"):
        outcome.problems.append(f"the child did not start: {stderr[-500:]}")
        return outcome
    if held:
        outcome.expect(held_line == f"held {held - 1}\n", f"not held as planned: {held_line!r}")
    outcome.still_queued = int(queued_line.split()[1])
    outcome.expect(outcome.still_queued > 0, "nothing was queued when the end came")
    if mode == "sigint":
        outcome.expect("KeyboardInterrupt" in stderr and child.returncode != 0, f"exit status {child.returncode}")
    else:
        outcome.expect(child.returncode == PRODUCER_RETURNCODES[mode], f"exit status {child.returncode}")
    indexes = [snapshot[0]["index"] for snapshot in load_records(save_dir, "episodes")]
    outcome.written = len(indexes)
    outcome.expect(indexes == list(range(count)), f"{count - len(indexes)} save(s) missing or out of order")
    stats_path = save_dir / STATS_FILE_NAME
    stats = orjson.loads(stats_path.read_bytes()) if stats_path.exists() else None
    outcome.expect(stats is not None and stats["written"] == stats["submitted"] == count and stats["dropped"] == 0,
                   f"{STATS_FILE_NAME}: {stats and {key: stats[key] for key in ('submitted', 'written', 'dropped')}}")
    return outcome


# A child that queues snapshots behind a slow store (about 3 s of draining, far less than
# its exit_timeout), says so, then ends as ``end`` says while the parent sends signals.
_SIGNALLED_CHILD = """
    import sys, time
    from rtsave_async import SnapshotWriter
    from rtsave_async.sinks import LocalSink
    from tests.support.sinks import SlowSink

    save_dir, end = sys.argv[1], sys.argv[2]
    writer = SnapshotWriter(save_dir, exit_timeout=15, max_in_flight=1,
                            sink=SlowSink(LocalSink(save_dir), 0.02, blocking=False))
    for index in range(150):
        writer.submit("custom", {"index": index})
    print("queued", flush=True)
    if end == "close":
        writer.close()
    elif end == "wait":
        time.sleep(120)
"""
SIGNALS_IN_EXIT_DRAIN = {
    "SIGTERM inside close()": ("close", [signal.SIGTERM]),
    "a second SIGTERM inside the first one's drain": ("wait", [signal.SIGTERM, signal.SIGTERM]),
    "SIGINT during the exit hook's drain": ("exit", [signal.SIGINT]),
}


def run_signal_in_exit_drain(save_dir: Path, name: str) -> RoundTwoOutcome:
    """A signal (see ``SIGNALS_IN_EXIT_DRAIN``) lands while the writers drain at exit:
    every save is still written and ``writer_stats.json`` is there."""
    end, signals = SIGNALS_IN_EXIT_DRAIN[name]
    child = python_child(_SIGNALLED_CHILD, str(save_dir), end)
    started = child.stdout.readline().strip() == "queued"
    for signum in signals:
        time.sleep(0.3)  # let the drain begin: the signal must land inside it
        child.send_signal(signum)
    _, err = child.communicate(timeout=CHILD_TIMEOUT)
    stats_path = save_dir / STATS_FILE_NAME
    if not started or not stats_path.exists():
        return RoundTwoOutcome(submitted=150, problems=[f"no {STATS_FILE_NAME} (child: {err[-500:]})"])
    outcome = RoundTwoOutcome.of(orjson.loads(stats_path.read_bytes()))
    outcome.expect(outcome.written == outcome.submitted == 150, f"written {outcome.written} of 150")
    if signals[0] == signal.SIGTERM:
        outcome.expect(child.returncode == -signal.SIGTERM, f"exit status {child.returncode}")
    return outcome


# ---------------------------------------------------------------- item 14: no deletes through a symlink
def run_symlinked_retention(root: Path) -> RoundTwoOutcome:
    """``checkpoints`` is a symlink to someone else's folder: retention refuses, and
    nothing there is deleted (checkpoint names, a "dead" temp name)."""
    outside, save_dir = root / "someone_elses", root / "run"
    outside.mkdir(parents=True)
    save_dir.mkdir()
    (save_dir / "checkpoints").symlink_to(outside)
    kept = [f"checkpoint_20260101_000000_0000000{seq}_abcdef{suffix}" for seq in (1, 2) for suffix in (".json", ".zip")]
    kept.append(".checkpoint_x.zip.999999999.0.tmp")
    for name in kept:
        (outside / name).write_bytes(b"not yours")

    async def prune() -> None:
        sink = LocalSink(save_dir)
        await sink.start()
        await prune_checkpoints(sink, keep_last=1)

    outcome = RoundTwoOutcome()
    try:
        asyncio.run(prune())
        outcome.problems.append("retention went through the symlink without a PermissionError")
    except PermissionError as exc:
        outcome.expect("symlinked folder" in str(exc), f"unclear error: {exc}")
    deleted = sorted(set(kept) - {path.name for path in outside.iterdir()})
    outcome.expect(not deleted, f"deleted outside the save_dir: {deleted}")
    return outcome


# ---------------------------------------------------------------- items 1 and 15: two live writers in one folder
def submit_checkpoint(writer: SnapshotWriter, keep_last: int = 1) -> bool:
    """Submit a small checkpoint whose retention runs as CheckpointSaver's does."""
    return writer.submit("checkpoints", lambda files: {"files": files},
                         attachments={".zip": lambda: b"model" * 50, ".state.npz": lambda: b"state"},
                         on_written=lambda url: prune_checkpoints(writer.sink, keep_last, writer_id=writer.writer_id))


def run_two_live_writers(save_dir: Path) -> RoundTwoOutcome:
    """One writer is paused with a checkpoint's attachments stored and its JSON on the way
    (like a SAC process under SIGSTOP) while another writes three checkpoints with
    retention in the same folder: neither loses or breaks a file, names never repeat,
    and ``writer_stats.json`` counts both."""
    paused_sink = GatedSink(LocalSink(save_dir), only=".json", blocking=False)
    paused = SnapshotWriter(save_dir, drain_interval=0, sink=paused_sink)
    submit_checkpoint(paused)
    outcome = RoundTwoOutcome()
    if not paused_sink.entered.wait(10):
        paused_sink.open()
        paused.close()
        return RoundTwoOutcome(problems=["the paused writer never stored its attachments"])
    with SnapshotWriter(save_dir, drain_interval=0) as other:
        flushed = [submit_checkpoint(other) and other.flush(10) for _ in range(3)]
        paused_sink.open()
        stats = paused.close()
        listings = sorted((save_dir / "checkpoints").glob("*.json"))
    total = orjson.loads((save_dir / STATS_FILE_NAME).read_bytes())
    outcome = RoundTwoOutcome.of(total)
    outcome.expect(all(flushed), "the other writer's checkpoints did not all flush")
    outcome.expect(stats["written"] == 1 and stats["failed"] == 0, f"paused writer: {stats['errors']}")
    outcome.expect(len(listings) == 2, f"{len(listings)} checkpoints listed instead of each writer's newest")
    outcome.problems += listed_but_broken(save_dir / "checkpoints")
    names = [path.name for path in (save_dir / "checkpoints").iterdir()]
    outcome.expect(len(names) == len(set(names)) == 6, f"files: {sorted(names)}")
    outcome.expect(sorted(total["writers"]) == sorted([paused.writer_id, other.writer_id]) and total["written"] == 4,
                   f"{STATS_FILE_NAME} does not count both writers")
    return outcome


def run_retention_after_a_finished_writer(save_dir: Path) -> RoundTwoOutcome:
    """What a finished (closed) writer left is still pruned by the next one's retention."""
    with SnapshotWriter(save_dir, drain_interval=0) as finished:
        for _ in range(2):
            finished.submit("checkpoints", {"old": True}, attachments={".zip": lambda: b"old model"})
    (save_dir / "checkpoints" / ".orphan").touch()
    with SnapshotWriter(save_dir, drain_interval=0) as resumed:
        submit_checkpoint(resumed)
    outcome = RoundTwoOutcome.of(resumed.stats())
    tags = {name.split("_")[-1].split(".")[0] for name in os.listdir(save_dir / "checkpoints")
            if not name.startswith(".")}
    outcome.expect(tags == {writer_tag(resumed.writer_id)}, f"left by the finished writer: {tags}")
    return outcome


# ---------------------------------------------------------------- item 8: odd values from the env
ODD_VALUE_STEPS = 256
ODD_VALUE_SAVE_FREQUENCY = 64


def _placeholder_check(type_name: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and value.get(PLACEHOLDER_KEY) == type_name and bool(value.get("reason"))


def _placeholder_because(reason: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and bool(value.get(PLACEHOLDER_KEY)) \
        and str(value.get("reason", "")).startswith(reason)


def _close_to(expected: list[float]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and len(value) == len(expected) \
        and all(abs(got - want) <= 1e-6 for got, want in zip(value, expected))


@dataclasses.dataclass(frozen=True)
class OddValueCase:
    """What the last record must hold for one kind of odd env value, and the problem counted for it."""

    kind: str  # a key of tests/user_envs.py's ODD_VALUES
    category: str
    path: tuple[Any, ...]  # from the record to the value that is checked
    check: Callable[[Any], bool]
    counted: str | None  # the value problem counted (and warned about once); None: nothing counted
    vec_env: str = "dummy"


ODD_VALUE_CASES: dict[str, OddValueCase] = {case.kind + ("" if case.vec_env == "dummy" else f" ({case.vec_env})"): case
                                           for case in [
    OddValueCase("none_reward", names.LEARNING_METRICS, ("reward_components", "odd"), _placeholder_check("NoneType"),
                 "reward_components not numeric"),
    OddValueCase("string_reward", names.LEARNING_METRICS, ("reward_components", "odd"), _placeholder_check("str"),
                 "reward_components not numeric"),
    OddValueCase("per_foot_vector", names.LEARNING_METRICS, ("reward_components", "odd"),
                 _close_to([0.1, 0.2, 0.3, 0.4]), None),
    OddValueCase("two_element_tensor_cost", names.LEARNING_METRICS, ("cost_components", "odd"),
                 _close_to([0.5, 0.25]), None),
    OddValueCase("ndarray_components", names.LEARNING_METRICS, ("reward_components",), _placeholder_check("ndarray"),
                 "reward_components not a mapping"),
    OddValueCase("list_components", names.LEARNING_METRICS, ("reward_components",), _placeholder_check("list"),
                 "reward_components not a mapping"),
    OddValueCase("meta_tensor", names.EPISODES, ("detailed_info", "robot_state"),
                 _placeholder_because("Tensor not readable"), "Tensor not readable"),
    OddValueCase("str_raises", names.EPISODES, ("detailed_info", "robot_state"),
                 _placeholder_because("StrRaises not readable"), "StrRaises not readable"),
    OddValueCase("cyclic_list", names.EPISODES, ("detailed_info", "robot_state", 1),
                 _placeholder_because("reference cycle"), "reference cycle"),
    OddValueCase("deep_dict", names.EPISODES, ("detailed_info", "robot_state", *("child",) * 99),
                 _placeholder_because("nested deeper than 100"), "nested deeper than 100"),
    *(OddValueCase("detailed_info_raises", names.EPISODES, ("detailed_info",),
                   lambda detailed: detailed["robot_state"] is None and detailed["foot_contacts"] is None
                   and detailed["episode_info"]["current_step"] is not None,  # the tracker's own count
                   "get_detailed_episode_info raised", vec_env) for vec_env in ("dummy", "subproc")),
    OddValueCase("unpicklable", names.EPISODES, ("detailed_info", "robot_state"),
                 lambda robot_state: "lock" in robot_state, None, "subproc"),  # copied as its text in the worker
]}


def run_odd_env_value(save_dir: Path, name: str) -> RoundTwoOutcome:
    """PPO on an env that reports one kind of odd value every step (``ODD_VALUE_CASES``):
    training completes, the record holds the documented placeholder, null or mean, and
    the problem is counted at every save and warned about exactly once."""
    from tests.user_envs import OddValueEnv

    case = ODD_VALUE_CASES[name]
    env = make_vec_env(lambda: OddValueEnv(case.kind), n_envs=2, seed=0,
                       vec_env_cls=SubprocVecEnv if case.vec_env == "subproc" else DummyVecEnv)
    callback = RealTimeSavingCallback(save_dir, save_frequency=ODD_VALUE_SAVE_FREQUENCY, save_checkpoints=False,
                                      save_hyperparameters=False)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.learn(ODD_VALUE_STEPS, callback=callback)
    finally:
        env.close()
    outcome = RoundTwoOutcome.of(callback.writer_stats)
    outcome.expect(model.num_timesteps >= ODD_VALUE_STEPS, f"training stopped at {model.num_timesteps}")
    value: Any = list(open_run(save_dir).records(case.category))[-1]
    try:
        for step in case.path:
            value = value[step]
        outcome.expect(case.check(value), f"{'/'.join(map(str, case.path))} is {str(value)[:200]}")
    except (KeyError, IndexError, TypeError) as exc:
        outcome.problems.append(f"{'/'.join(map(str, case.path))} not in the record ({exc!r})")
    messages = [str(warning.message) for warning in caught if "RealTimeSavingCallback" in str(warning.message)]
    counts = callback.value_problems.counts
    if case.counted is None:
        outcome.expect(counts == {} and messages == [], f"problems counted: {counts}")
    else:
        outcome.expect(counts.get(case.counted, 0) > 1, f"counted {counts}")
        first = callback.value_problems.first_messages.get(case.counted, "\0")
        outcome.expect(sum(first in message for message in messages) == 1, f"warnings: {messages}")
    return outcome


# ---------------------------------------------------------------- item 9: values the serializer must not misstate
class Meters(float):
    """A float subclass, as unit libraries define."""


def _quantized() -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized creation functions are deprecated
        return torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.5, 0, torch.quint8)


def _nested() -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the nested-tensor API is a prototype
        return torch.nested.nested_tensor([torch.ones(2), torch.zeros(3)])


def _torch(make: Callable[[Any], Any]) -> Callable[[], Any]:
    def build() -> Any:
        import torch

        return make(torch)
    return build


# name -> (a function making the value, what it must read back as (or a check of it), placeholders and
# non-finite values counted)
SERIALIZER_CASES: dict[str, tuple[Callable[[], Any], Any, int, int]] = {
    "masked entries": (lambda: np.ma.masked_array([[1, -999, 3]], mask=[[0, 1, 0]]), [[1, None, 3]], 0, 0),
    "a masked NaN beside an unmasked inf": (lambda: np.ma.masked_array([np.nan, np.inf, 2.0], mask=[1, 0, 0]),
                                            [None, None, 2.0], 0, 1),
    "the masked constant": (lambda: np.ma.masked, None, 0, 0),
    "a masked array in a list": (lambda: [np.ma.masked_array([1.0, 2.0], mask=[1, 0]), 3], [[None, 2.0], 3], 0, 0),
    "a masked datetime64": (lambda: np.ma.masked_array(np.array(["2020-01-01", "2021-03-04"], dtype="datetime64[D]"),
                                                       mask=[1, 0]), [None, "2021-03-04"], 0, 0),
    "an object array of None": (lambda: np.array([None, None], dtype=object), [None, None], 0, 0),
    "a set beside a NaN": (lambda: [frozenset([3]), float("nan")], [[3], None], 0, 1),
    "a None beside a NaN in a dict": (lambda: {"rate": None, "x": float("nan")}, {"rate": None, "x": None}, 0, 1),
    "a None beside an array holding inf": (lambda: {"rate": None, "xs": np.array([np.inf, 1.0])},
                                           {"rate": None, "xs": [None, 1.0]}, 0, 1),
    "a None beside a string saying null": (lambda: {"rate": None, "text": "null"}, {"rate": None, "text": "null"}, 0, 0),
    "Nones deep in dicts beside a NaN in a list": (lambda: {"env": {"robot": {"state": None}}, "xs": [float("nan")]},
                                                   {"env": {"robot": {"state": None}}, "xs": [None]}, 0, 1),
    "Nones in dicts and in a list, no NaN": (lambda: {"env": {"state": None}, "xs": [None, 1.0]},
                                             {"env": {"state": None}, "xs": [None, 1.0]}, 0, 0),
    "a long double": (lambda: np.longdouble(1.5), 1.5, 0, 0),
    "a long double array": (lambda: np.array([0.25, 4.0], dtype=np.longdouble), [0.25, 4.0], 0, 0),
    "a float subclass": (lambda: Meters(2.5), 2.5, 0, 0),
    "float subclasses nested": (lambda: [Meters(1.0), {"x": Meters(-3.0)}], [1.0, {"x": -3.0}], 0, 0),
    "a sparse tensor": (_torch(lambda torch: torch.eye(2).to_sparse()), [[1.0, 0.0], [0.0, 1.0]], 0, 0),
    "a float8 tensor": (_torch(lambda torch: torch.tensor([1.0, -2.0]).to(torch.float8_e4m3fn)), [1.0, -2.0], 0, 0),
    "a quantized tensor": (_quantized, [1.0, 2.0], 0, 0),
    "a nested tensor": (_nested, [[1.0, 1.0], [0.0, 0.0, 0.0]], 0, 0),
    "a bfloat16 tensor": (_torch(lambda torch: torch.tensor([0.5], dtype=torch.bfloat16)), [0.5], 0, 0),
    "a meta tensor (placeholder for that value only)": (
        _torch(lambda torch: torch.empty(3, device="meta")),
        lambda value: value[PLACEHOLDER_KEY] == "Tensor" and "meta" in value["reason"], 1, 0),
}


def run_serializer_value(save_dir: Path, name: str) -> RoundTwoOutcome:
    """One record holding a value of ``SERIALIZER_CASES`` beside ordinary fields, through a
    real writer: the value reads back as stated, the other fields are kept, and the
    placeholders and non-finite values are counted as stated."""
    make, expected, placeholders, nonfinite = SERIALIZER_CASES[name]
    with SnapshotWriter(save_dir) as writer:
        writer.submit("custom", {"value": make(), "other": [1, 2.5, "kept"]})
    outcome = RoundTwoOutcome.of(writer.stats())
    (record,) = [record for save in open_run(save_dir).saves("custom") for record in save.records()]
    outcome.expect(record.get("other") == [1, 2.5, "kept"], "the rest of the record was lost")
    value = record.get("value")
    outcome.expect(expected(value) if callable(expected) else value == expected, f"read back as {value!r}")
    stats = writer.stats()
    outcome.expect((stats["placeholders"], stats["nonfinite_values"]) == (placeholders, nonfinite),
                   f"counted {stats['placeholders']} placeholder(s), {stats['nonfinite_values']} non-finite")
    return outcome
