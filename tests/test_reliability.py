"""Reliability torture suite: nothing lost, nothing torn (issue 6).

The scenarios live in ``tests/support/reliability_scenarios.py`` (shared with
``python -m benchmarks.bench_reliability``); these tests assert on what they measure.
CI runs the small counts; ``RTSAVE_LONG=1`` runs the large ones (see ``trials``).
Bugs still open are kept as ``xfail(strict=True)`` tests whose reason says what is wrong.
"""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from conftest import python_child
from rtsave_async import RealTimeSavingCallback, SnapshotWriter, list_snapshot_files
from rtsave_async.writer import STATS_FILE_NAME
from tests.support.reliability_scenarios import (
    DISK_TROUBLES,
    FUZZ_EXAMPLES,
    GRACEFUL_ENDS,
    GRACEFUL_REPEATS,
    KILL_KINDS,
    LOAD_POLICIES,
    LOAD_QUEUE_SIZE,
    LOAD_SECONDS,
    READER_SECONDS,
    SIGKILL_STREAM_TRIALS,
    SIGKILL_TRAIN_TRIALS,
    SLOW_DISK_CASES,
    SLOW_DISK_TIMESTEPS,
    STALLED_ENDS,
    STALLED_EXIT_BOUND,
    KillTrial,
    RobotPose,
    captured_writer_errors,
    cyclic,
    cli_sandbox,
    fuzz_through_writer,
    hostile_run_names,
    inspect_save_dir,
    lost_distribution,
    object_array,
    orphan_after_crash_between_attachment_and_json,
    round_trip_problems,
    run_cli,
    run_concurrent_readers,
    run_disk_trouble,
    run_graceful_end,
    run_load,
    run_sigkill_trials,
    run_slow_disk,
    run_stalled_disk_exit,
    trials,
)

MiB = 2**20
LOAD_RSS_GROWTH_LIMIT = 64 * MiB  # the queue holds 16 snapshots of ~1 KB: anything near this is a leak


# ---------------------------------------------------------------- 1. SIGKILL at random moments
def describe(trial: KillTrial) -> str:
    return (f"{trial.kind} child killed {trial.seconds_before_kill:.2f} s after it started saving: "
            f"submitted {trial.submitted}, written {trial.written}, lost {trial.lost}\n{trial.stderr}")


@pytest.mark.parametrize("format_name", ["json", "jsonl.zst"])
@pytest.mark.parametrize("kind", KILL_KINDS)
def test_sigkill_at_a_random_moment_leaves_only_whole_files(tmp_path: Path, kind: str, format_name: str) -> None:
    """Every final file parses (a segment: every frame but a torn last one of an open
    segment), every listed checkpoint loads, leftovers are temps a new writer removes, what
    is lost is at most what was still queued, and the next writer continues the run."""
    count = trials(*(SIGKILL_STREAM_TRIALS if kind == "stream" else SIGKILL_TRAIN_TRIALS))
    seed = random.randrange(2**32)
    kills = run_sigkill_trials(kind, tmp_path, count, seed, format_name)
    for trial in kills:
        context = f"seed {seed}; {describe(trial)}"
        assert trial.returncode == -signal.SIGKILL, context
        assert trial.disk.torn == [] and trial.disk.unloadable == [] and trial.disk.strays == [], context
        assert all(Path(name).name.startswith(".") and name.endswith(".tmp") for name in trial.disk.temps), context
        if format_name == "json":
            assert trial.disk.listed == trial.disk.json_files, context  # readers list the final files, no temp
        assert trial.temps_after_restart == [], context
        assert 0 <= trial.lost <= trial.loss_bound, context
        if kind == "stream":  # FIFO: the records stored are exactly the first ones submitted, none invented
            saved = trial.disk.stream_indexes
            assert saved == list(range(len(saved))), context
            save_dir = tmp_path / f"{kind}-{kills.index(trial)}" / "save"
            with SnapshotWriter(save_dir, format=format_name) as writer:  # the next writer continues
                writer.submit("episodes", [{"index": len(saved)}])
            assert inspect_save_dir(save_dir, load_checkpoints=False).stream_indexes == [*saved, len(saved)], context
    assert sum(trial.written for trial in kills) > 0
    low, median, high = lost_distribution(kills)
    print(f"\nSIGKILL {kind} {format_name}: {count} trials, records lost per kill min {low} / median {median} / max {high}")


def test_a_crash_between_attachment_and_json_leaves_no_resumable_half_checkpoint(tmp_path: Path) -> None:
    """The attachments of the interrupted checkpoint are left (the next checkpoint's
    retention removes them: test_checkpoints), but nothing lists them as resumable."""
    announced, disk = orphan_after_crash_between_attachment_and_json(tmp_path)
    assert announced == ["attachments stored"]
    assert disk.temps == [] and disk.unloadable == []  # (the gated child's attachment is a stand-in, not a zip)
    assert disk.orphans and list_snapshot_files(tmp_path / "save", "checkpoints") == []


def test_a_dead_writers_stats_temp_in_save_dir_is_cleaned(tmp_path: Path) -> None:
    dead_pid = 2**22 + 4321  # above the default pid_max: no such process
    stale = tmp_path / f".{STATS_FILE_NAME}.{dead_pid}.0.tmp"  # the name temp_name() gives it
    stale.write_bytes(b'{"torn')
    SnapshotWriter(tmp_path).close()
    assert inspect_save_dir(tmp_path, load_checkpoints=False).temps == []


# ---------------------------------------------------------------- 2. graceful ends lose nothing
@pytest.mark.parametrize("end", GRACEFUL_ENDS)
def test_every_graceful_end_of_training_loses_nothing(tmp_path: Path, end: str) -> None:
    """On a slow disk (records still queued at the end), each way training can end keeps every record."""
    rng = random.Random()
    for repeat in range(trials(*GRACEFUL_REPEATS)):
        outcome = run_graceful_end(end, tmp_path / f"repeat-{repeat}", rng)
        context = f"{end}: {outcome.stderr}"
        assert outcome.exited and outcome.returncode == GRACEFUL_ENDS[end].returncode, context
        assert outcome.stats is not None, context
        stats = outcome.stats
        assert stats["dropped"] == stats["failed"] == stats["pending"] == 0, context
        assert stats["written"] == stats["submitted"] - stats["dropped"] == outcome.submitted > 0, context
        ledger = outcome.ledger
        assert sum(ledger.accepted.values()) <= stats["submitted"] <= sum(ledger.attempted.values()), context
        # Every accepted record is a file. A signal can land between submit() returning and the
        # harness's ledger counting it, so a file may belong to a submit counted only as attempted.
        for category, files in outcome.disk.json_files.items():
            assert ledger.accepted[category] <= files <= ledger.attempted[category], f"{category}: {context}"
        assert set(outcome.ledger.accepted) <= set(outcome.disk.json_files), context
        assert outcome.lost == 0 and outcome.dropped == 0, context
        assert outcome.disk.torn == outcome.disk.unloadable == outcome.disk.temps == [], context
        if "exception" in end:
            assert "failed on purpose" in outcome.stderr


@pytest.mark.parametrize("end", STALLED_ENDS)
def test_exit_is_bounded_when_the_disk_never_answers(tmp_path: Path, end: str) -> None:
    outcome = run_stalled_disk_exit(end, tmp_path)
    assert outcome.exited, f"the child was still running {STALLED_EXIT_BOUND} s after its end began\n{outcome.stderr}"
    assert "not yet written" in outcome.stderr  # the writer says what it could not finish
    if STALLED_ENDS[end].signal is not None:
        assert outcome.returncode == -STALLED_ENDS[end].signal, outcome.stderr
    else:
        assert outcome.returncode == 0, outcome.stderr
        assert outcome.stats is not None and outcome.stats["pending"] > 0 and outcome.stats["written"] == 0


# ---------------------------------------------------------------- 3. disk full, read-only
@pytest.mark.parametrize("trouble", DISK_TROUBLES)
def test_training_survives_a_full_or_read_only_disk_and_saving_resumes(trouble: str, mount_tmpfs) -> None:
    outcome = run_disk_trouble(trouble, mount_tmpfs)
    stats = outcome.stats
    assert outcome.timesteps >= 2048 and outcome.released_at is not None  # training finished
    assert stats["failed"] > 0 and stats["pending"] == stats["dropped"] == 0
    assert stats["submitted"] == stats["written"] + stats["failed"]
    words = DISK_TROUBLES[trouble]
    lines = [line for line in outcome.error_logs if words in line]
    assert lines and all(str(outcome.save_dir) in line for line in lines), outcome.error_logs
    # logged at most once per failing category (once per error kind), counted every time
    assert 1 <= len(lines) <= len(stats["failed_by_category"]) and len(lines) < stats["failed"], outcome.error_logs
    assert all(words in message and str(outcome.save_dir) in message for message in stats["errors"])
    for category, timesteps in outcome.timesteps_after_release.items():
        assert timesteps, f"nothing in {category} was saved after the disk recovered"
    assert outcome.disk.torn == outcome.disk.unloadable == outcome.disk.temps == []


def test_a_read_only_save_dir_is_reported_in_one_line(mount_tmpfs) -> None:
    save_dir = mount_tmpfs("ro,size=64k") / "run"
    with captured_writer_errors() as lines, SnapshotWriter(save_dir) as writer:
        for category in ("episodes", "learning_metrics", "environment_states"):
            writer.submit(category, {"value": 1})
    assert len(lines) == len(set(lines)) == 1, lines


# ---------------------------------------------------------------- 4. bad input never crashes training
def test_hostile_values_are_written_faithfully_or_marked(tmp_path: Path) -> None:
    """Hypothesis records through a real writer: every file parses, every value comes back
    faithfully or as a justified, counted placeholder."""
    examples = trials(*FUZZ_EXAMPLES)
    tally = fuzz_through_writer(tmp_path, examples)
    assert tally.examples >= examples and tally.written == tally.examples
    assert tally.torn == tally.problems == 0
    assert tally.placeholders > 0  # the unrepresentable values were exercised


@pytest.mark.parametrize("value", [
    np.array([1.5, 2.5], dtype=np.longdouble), np.clongdouble(1 + 1j), "lone surrogate \ud800",
    {2**70: "huge key"}, object_array([cyclic(1, "dict")]),
    np.array(["ok", "x\udc00"]),
], ids=["float128 array", "complex256 scalar", "lone surrogate", "int key beyond 64 bits", "cycle in object array",
        "lone surrogate in a str array"])
def test_one_unrepresentable_value_does_not_cost_the_whole_record(tmp_path: Path, value: object) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        assert round_trip_problems(writer, {"timestep": 7, "kept": [1.5, "text"], "odd": value}) == []


def test_float64_tensors_keep_their_precision(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        assert round_trip_problems(writer, {"value": torch.tensor([0.1 + 1e-12, 1 / 3], dtype=torch.float64)}) == []


@pytest.mark.parametrize("value", [
    np.array([["NaT"], ["1970-01-01"]], dtype="M8[s]"), np.array([["10000-01-01"]], dtype="M8[s]"),
    np.array(["NaT", "2020-01-01"], dtype="M8[D]"), np.array(["NaT"], dtype="M8[ns]"),
    np.array(["2020-01-01T00:00:00.000000001", "-0001-06-01"], dtype=">M8[ns]")[::-1],
    np.datetime64("NaT"), np.datetime64("12000-01-01"), np.array("NaT", dtype="M8[D]"),
    {np.datetime64("NaT", "s")}, object_array([np.datetime64("NaT", "D"), np.array(["NaT"], dtype="M8[D]")]),
    np.timedelta64(90, "s"), np.array([[1, "NaT"]], dtype=">m8[ms]").T,
], ids=["2-D NaT [s]", "2-D year 10000 [s]", "NaT [D]", "NaT [ns]", "ns precision, year -1, big-endian view",
        "NaT scalar", "year 12000 scalar", "0-d NaT", "in a set", "in an object array",
        "timedelta64 scalar", "timedelta64 big-endian view with NaT"])
def test_datetime64_and_timedelta64_with_nat_and_far_dates_come_back_faithfully(tmp_path: Path, value: np.ndarray) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        assert round_trip_problems(writer, {"stamps": value}) == []


@pytest.mark.parametrize(("record", "written"), [
    ({1: "int", "1": "str"}, {"1": "str", "int:1": "int"}),
    ({"1": "str", 1: "int"}, {"1": "str", "int:1": "int"}),
    ({None: "none", "null": "str", float("nan"): "nan"}, {"null": "str", "NoneType:None": "none", "float:nan": "nan"}),
    ({True: "bool", "true": "str", 2.5: "float", "2.5": "str"},
     {"true": "str", "bool:True": "bool", "2.5": "str", "float:2.5": "float"}),
], ids=["int then str", "str then int", "None, NaN and 'null'", "bool and float"])
def test_keys_with_the_same_json_text_are_all_kept(tmp_path: Path, record: dict, written: dict) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        writer.submit("episodes", [record])
    (path,) = list_snapshot_files(tmp_path, "episodes")
    (saved,) = orjson.loads(path.read_bytes())
    metadata = saved.pop("_rtsave")
    assert path.read_bytes().count(b'":') == len(written) + 1 + len(metadata)  # no duplicate key in the text either
    assert saved == written


@pytest.mark.parametrize("value", [np.array(3.5), np.array(7, dtype=">i4"), torch.tensor(1.25)],
                         ids=["0-d float64", "0-d big-endian int", "0-d tensor"])
def test_zero_dimensional_values_stay_scalars(tmp_path: Path, value: object) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        assert round_trip_problems(writer, {"loss": value}) == []


def test_nan_in_tensors_dataclasses_and_sets_is_counted(tmp_path: Path) -> None:
    record = {"tensor": torch.tensor([float("nan"), 1.0]), "pose": RobotPose("nan", float("inf")),
              "set": frozenset([float("nan")])}
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        assert round_trip_problems(writer, record) == []
        assert writer.stats()["nonfinite_values"] == 3


DATACLASS_CYCLE = """
    import dataclasses, typing
    from rtsave_async.formats.serialize import SnapshotSerializer

    @dataclasses.dataclass
    class Node:
        left: typing.Any = None
        right: typing.Any = None

    node = Node()
    node.left = node.right = node
    print("serializing", flush=True)
    SnapshotSerializer().dumps([node])
    print("done", flush=True)
"""


def test_a_dataclass_that_references_itself_twice_does_not_hang_the_writer() -> None:
    child = python_child(DATACLASS_CYCLE)
    assert child.stdout.readline().strip() == "serializing"
    try:
        child.wait(timeout=5)  # correct code needs milliseconds; the output is too small to fill the pipe
    except subprocess.TimeoutExpired:
        child.kill()
    assert child.stdout.read().strip() == "done"  # read() after readline(): communicate() would skip buffered text


# ---------------------------------------------------------------- 5. hostile names
@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=80), st.sampled_from(["../x", "/etc", "a/../../b", "..", "\x00", "x" * 300,
                                                        "episodes\u2215x", "ok\n", "CON", "-rf"])))
def test_writer_categories_from_any_text_stay_inside_save_dir(tmp_path_factory: pytest.TempPathFactory,
                                                              category: str) -> None:
    save_dir = tmp_path_factory.mktemp("categories")
    paths: list[Path | None] = []
    with SnapshotWriter(save_dir) as writer:
        try:
            writer.submit(category, {"value": 1}, on_written=paths.append)
        except ValueError as error:
            assert "invalid snapshot category" in str(error)
            return
    (path,) = paths
    assert path is not None and Path(path).parent.parent == save_dir and Path(path).parent.name == category


@pytest.mark.parametrize("name", list(hostile_run_names(Path("/sandbox"))))
def test_cli_run_names_cannot_leave_models(tmp_path: Path, name: str) -> None:
    sandbox, cwd = cli_sandbox(tmp_path)
    outcome = run_cli(sandbox, cwd, ["--run_name", hostile_run_names(sandbox)[name]])
    assert outcome.outside(cwd / "models") == [], outcome.output
    assert outcome.thread_errors == []
    assert outcome.rejected("run_name") or outcome.exit_status == 0, outcome.output


def test_cli_very_long_run_name_is_reported_clearly_and_writes_nothing_outside(tmp_path: Path) -> None:
    sandbox, cwd = cli_sandbox(tmp_path)
    run_name = "r" * 300
    outcome = run_cli(sandbox, cwd, ["--run_name", run_name])
    assert outcome.outside(cwd / "models") == [] and outcome.thread_errors == []
    assert outcome.rejected("--run_name is 300 bytes long"), outcome.output
    assert not (cwd / "models").exists()  # rejected before training started


@pytest.mark.parametrize("env_id", ["../../etc/passwd", "/abs/Pendulum-v1", "Pendulum\x00-v1", "Pendulum-v1/../.."])
def test_cli_hostile_env_ids_are_rejected_before_anything_is_written(tmp_path: Path, env_id: str) -> None:
    sandbox, cwd = cli_sandbox(tmp_path)
    outcome = run_cli(sandbox, cwd, ["--env", env_id])
    assert outcome.rejected("cannot make env"), outcome.output
    assert outcome.created == [] and outcome.thread_errors == []


def test_cli_save_dir_is_honoured_and_nothing_lands_outside_it(tmp_path: Path) -> None:
    sandbox, cwd = cli_sandbox(tmp_path)
    save_dir = Path("../out side/ünï/run")
    outcome = run_cli(sandbox, cwd, ["--save_dir", str(save_dir)])
    assert outcome.exit_status == 0, outcome.output
    assert outcome.outside(cwd / save_dir) == [] and outcome.thread_errors == []
    assert any(path.name.endswith(".json") for path in outcome.created)


@pytest.mark.parametrize("where", ["SnapshotWriter", "cli --save_dir"])
def test_save_dir_with_nul_is_rejected_clearly(tmp_path: Path, where: str) -> None:
    if where == "SnapshotWriter":
        with pytest.raises(ValueError, match="null"):
            SnapshotWriter(tmp_path / "bad\x00dir").close()
    else:
        sandbox, cwd = cli_sandbox(tmp_path)
        outcome = run_cli(sandbox, cwd, ["--save_dir", "bad\x00dir"])
        assert outcome.thread_errors == []
        assert outcome.rejected("save_dir"), outcome.output


def test_callback_save_dir_with_traversal_and_odd_unicode_writes_only_inside_it(tmp_path: Path) -> None:
    save_dir = tmp_path / "a" / ".." / "b c" / "\u202eünï" / "run"
    before = set(tmp_path.rglob("*"))
    model = PPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=0), n_steps=64, batch_size=64,
                n_epochs=1, device="cpu")
    model.learn(128, callback=RealTimeSavingCallback(save_dir, save_frequency=32, checkpoint_frequency=64))
    # Folders on the literal path (here "a", needed to resolve "a/..") are created empty; files only inside.
    files = [path for path in set(tmp_path.rglob("*")) - before if path.is_file()]
    assert files and all(path.resolve().is_relative_to(save_dir.resolve()) for path in files)


# ---------------------------------------------------------------- 6. load
@pytest.mark.parametrize("policy", LOAD_POLICIES)
def test_eight_flat_out_producers_on_a_small_queue_add_up_exactly(tmp_path: Path, policy: str) -> None:
    outcome = run_load(tmp_path, policy, trials(*LOAD_SECONDS))
    stats = outcome.stats
    assert outcome.hung_producers == 0, "a producer was still blocked in submit(): deadlock"
    assert stats["pending"] == 0 and stats["failed"] == 0
    assert stats["submitted"] == outcome.submitted == stats["written"] + stats["dropped"] + stats["failed"]
    assert dict(outcome.files) == stats["written_by_category"]
    assert outcome.duplicates == outcome.torn == 0
    # Not starved by producers that keep submitting to a full queue (a starved writer managed
    # about 8 files a second here; a working one writes thousands).
    assert stats["written"] >= 10 * LOAD_QUEUE_SIZE, f"the writer thread wrote only {stats['written']} files"
    if policy == "drop_oldest":  # every submit is accepted; evictions are the drops
        assert sum(outcome.refused) == 0 and stats["written"] + stats["dropped"] == sum(outcome.accepted)
    else:  # a refused submit is a drop; every accepted one is on disk
        assert stats["dropped_by_category"] == {f"producer_{number}": refused
                                                for number, refused in enumerate(outcome.refused) if refused}
        assert [outcome.files[f"producer_{number}"] for number in range(len(outcome.accepted))] == outcome.accepted
    growth = outcome.peak_rss - outcome.baseline_rss
    print(f"\nload {policy}: {outcome.submitted} submitted, {stats['written']} written, {stats['dropped']} dropped; "
          f"peak RSS {outcome.peak_rss / MiB:.1f} MiB (+{growth / MiB:.1f} MiB)")
    assert growth < LOAD_RSS_GROWTH_LIMIT


@pytest.mark.parametrize("format_name, policy", [case for case in SLOW_DISK_CASES
                                                  if case in (("jsonl.zst", "block"), ("json", "drop_newest"))])
def test_training_on_a_slow_store_loses_nothing_and_counts_every_drop(tmp_path: Path, format_name: str,
                                                                     policy: str) -> None:
    outcome = run_slow_disk(tmp_path, format_name, policy, trials(*SLOW_DISK_TIMESTEPS))
    stats = outcome.stats
    print(f"\nslow store {format_name} {policy}: {outcome.ratio:.2f}x of no saving, {stats['stores']} stores for "
          f"{stats['written']} saves, {stats['dropped']} dropped")
    assert outcome.lost == 0 and outcome.torn == 0 and outcome.in_order
    assert stats["pending"] == stats["failed"] == 0
    assert outcome.saves_read_back == stats["written"]
    if format_name == "jsonl.zst":  # coalesced: the slow store is paid per drain, and block never had to drop
        assert stats["dropped"] == 0 and stats["stores"] < stats["written"] // 4


# ---------------------------------------------------------------- 7. readers during writes
def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    outcome = run_concurrent_readers(tmp_path / "save", trials(*READER_SECONDS), tmp_path / "reader")
    assert outcome.written > 0 and outcome.process_exited
    assert outcome.thread_checked > 0 and outcome.process_checked > 0  # both readers did read files
    assert outcome.thread_problems == [] and outcome.process_problems == []
