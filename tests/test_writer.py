"""The writer core in-process: round trips, naming, back-pressure, errors, stats."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from support.disk import fill_filesystem
from support.sinks import FailingSink, GatedSink
from support.waiting import wait_until
from rtsave_async import SnapshotWriter, list_snapshot_files, load_records
from rtsave_async.names import RUN_MANIFEST_KEY, STANDARD_CATEGORIES, WRITERS_FOLDER, file_prefix, temp_name
from rtsave_async.sinks import LocalSink
from rtsave_async.snapshot_queue import Snapshot, SnapshotQueue
from rtsave_async.writer import STATS_FILE_NAME
from rtsave_async.formats.serialize import PLACEHOLDER_KEY


def episode_record(index: int) -> dict:
    return {
        "timestep": index,
        "env_id": index % 4,
        "detailed_info": {"robot_state": {"joint_positions": np.linspace(0, 1, 12) + index}},
    }


@pytest.mark.parametrize("category", [*STANDARD_CATEGORIES, "custom_metrics"])
def test_round_trip_every_category(tmp_path: Path, category: str) -> None:
    with SnapshotWriter(tmp_path) as writer:
        assert writer.submit(category, [episode_record(1), episode_record(2)])
        assert writer.submit(category, episode_record(3))  # one record becomes a one-item array
        assert writer.flush(timeout=10)
    files = list_snapshot_files(tmp_path, category)
    assert [path.name.split("_")[0] for path in files] == [file_prefix(category).split("_")[0]] * 2
    assert all(path.name.startswith(file_prefix(category) + "_") for path in files)
    first, second = load_records(tmp_path, category)
    assert [record["timestep"] for record in first] == [1, 2]
    assert second[0]["detailed_info"]["robot_state"]["joint_positions"] == list(np.linspace(0, 1, 12) + 3)


def test_many_saves_in_one_second_get_distinct_ordered_names(tmp_path: Path) -> None:
    count = 600
    with SnapshotWriter(tmp_path, queue_size=count) as writer:
        for index in range(count):
            writer.submit("episodes", [{"timestep": index}])
    files = list_snapshot_files(tmp_path, "episodes")
    assert len({path.name for path in files}) == count
    assert [orjson.loads(path.read_bytes())[0]["timestep"] for path in files] == list(range(count))
    assert files == sorted(files)  # name order is time order


def test_names_continue_across_writers_without_overwriting(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path) as first:
        for index in range(3):
            first.submit("learning_metrics", {"run": 1, "index": index})
    with SnapshotWriter(tmp_path) as second:
        for index in range(3):
            second.submit("learning_metrics", {"run": 2, "index": index})
    records = [snapshot[0] for snapshot in load_records(tmp_path, "learning_metrics")]
    assert [(record["run"], record["index"]) for record in records] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


def test_concurrent_writers_on_one_folder_never_overwrite(tmp_path: Path) -> None:
    writers = [SnapshotWriter(tmp_path) for _ in range(3)]
    for index in range(200):
        for number, writer in enumerate(writers):
            writer.submit("episodes", {"writer": number, "index": index})
    for writer in writers:
        writer.close()
    seen = sorted((record["writer"], record["index"]) for record in
                  (snapshot[0] for snapshot in load_records(tmp_path, "episodes")))
    assert seen == sorted((number, index) for number in range(3) for index in range(200))


def gated_writer(save_dir: Path, **options) -> tuple[SnapshotWriter, GatedSink]:
    """A writer whose sink holds data stores shut until ``gate.open()``."""
    gate = GatedSink(LocalSink(save_dir))
    return SnapshotWriter(save_dir, sink=gate, **options), gate


def fill_behind_gate(writer: SnapshotWriter, gate: GatedSink, capacity: int, extra: int) -> list[bool]:
    """Hold the writer on snapshot 0, fill the queue, then submit ``extra`` more."""
    writer.submit("episodes", {"index": 0})
    assert gate.entered.wait(10)
    return [writer.submit("episodes", {"index": index}) for index in range(1, capacity + extra + 1)]


def written_indexes(save_dir: Path) -> list[int]:
    return [snapshot[0]["index"] for snapshot in load_records(save_dir, "episodes")]


def test_drop_newest_refuses_exactly_the_overflow(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path, queue_size=5, policy="drop_newest")
    accepted = fill_behind_gate(writer, gate, capacity=5, extra=7)
    assert accepted == [True] * 5 + [False] * 7
    gate.open()
    stats = writer.close()
    assert stats["dropped"] == 7 and stats["dropped_by_category"] == {"episodes": 7}
    assert stats["written"] == 6 and stats["submitted"] == 13 and stats["pending"] == 0
    assert written_indexes(tmp_path) == [0, 1, 2, 3, 4, 5]


def test_drop_oldest_evicts_exactly_the_oldest(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path, queue_size=5, policy="drop_oldest")
    accepted = fill_behind_gate(writer, gate, capacity=5, extra=7)
    assert all(accepted)
    gate.open()
    stats = writer.close()
    assert stats["dropped"] == 7 and stats["written"] == 6
    assert written_indexes(tmp_path) == [0, 8, 9, 10, 11, 12]


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_the_first_drop_is_logged_once_whether_refused_or_evicted(tmp_path: Path, policy: str, caplog) -> None:
    writer, gate = gated_writer(tmp_path, queue_size=5, policy=policy)
    with caplog.at_level("WARNING", logger="rtsave_async"):
        fill_behind_gate(writer, gate, capacity=5, extra=7)
    gate.open()
    writer.close()
    warnings = [record.getMessage() for record in caplog.records if "dropping snapshots" in record.getMessage()]
    assert len(warnings) == 1 and f"policy {policy}" in warnings[0]


def test_block_times_out_then_drops_and_counts(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path, queue_size=3, policy="block", block_timeout=0.01)
    accepted = fill_behind_gate(writer, gate, capacity=3, extra=2)
    assert accepted == [True, True, True, False, False]
    gate.open()
    stats = writer.close()
    assert (stats["dropped"], stats["written"], stats["submitted"]) == (2, 4, 6)


def test_block_waits_for_room_and_loses_nothing(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path, queue_size=2, policy="block", block_timeout=60)
    writer.submit("episodes", {"index": 0})
    assert gate.entered.wait(10)
    writer.submit("episodes", {"index": 1})
    writer.submit("episodes", {"index": 2})
    opener = threading.Timer(0.2, gate.open)
    opener.start()
    assert writer.submit("episodes", {"index": 3})  # blocks until the gate opens
    stats = writer.close()
    opener.join()
    assert stats["dropped"] == 0 and written_indexes(tmp_path) == [0, 1, 2, 3]


def test_flush_covers_everything_submitted_before_it(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path)
    for index in range(20):
        writer.submit("episodes", {"index": index})
    assert writer.flush(timeout=0.05) is False  # held shut: not done yet
    gate.open()
    assert writer.flush(timeout=10) is True
    assert written_indexes(tmp_path) == list(range(20))
    writer.close()


def test_an_idle_consumer_hears_the_first_put_once_and_a_full_wake_instead_of_it() -> None:
    calls: list[str] = []
    queue = SnapshotQueue(8, wake_at=3, on_ready=lambda: calls.append("ready"), on_first=lambda: calls.append("first"))
    queue.put(Snapshot("episodes", [1], 0.0))
    assert calls == []  # the consumer never said it was idle: it drains on its schedule
    assert queue.mark_idle() is False  # an item is waiting: not idle
    queue.take_batch(8)
    assert queue.take_batch(8) == [] and queue.mark_idle() is True  # empty: waiting, and idle
    for _ in range(3):
        queue.put(Snapshot("episodes", [1], 0.0))
    assert calls == ["first", "ready"]  # the first put arms a drain; the third reaches wake_at
    queue.take_batch(8)
    assert queue.take_batch(8) == [] and queue.mark_idle() is True
    for _ in range(3):
        queue.put(Snapshot("episodes", [1], 0.0))
    assert calls == ["first", "ready", "first", "ready"]


def test_a_save_submitted_to_a_writer_idle_for_a_while_is_stored_without_a_flush(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0.05) as writer:
        writer.submit("episodes", {"index": 0})
        assert wait_until(lambda: written_indexes(tmp_path) == [0])
        time.sleep(0.3)  # several drain intervals with nothing to do: the writer sleeps until a submit
        writer.submit("episodes", {"index": 1})
        assert wait_until(lambda: written_indexes(tmp_path) == [0, 1])


def test_close_is_idempotent_writes_stats_and_rejects_later_submits(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path)
    writer.submit("hyperparameters", {"learning_rate": 3e-4})
    stats = writer.close()
    assert writer.close() == stats
    saved = orjson.loads((tmp_path / STATS_FILE_NAME).read_bytes())
    assert saved["written"] == saved["submitted"] == 1 and saved["dropped"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("hyperparameters", {})


def test_close_returns_within_timeout_when_the_disk_stalls(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path)  # never opened: a disk that never answers
    for index in range(5):
        writer.submit("episodes", {"index": index})
    stats = writer.close(timeout=0.2)
    assert stats["pending"] == 5 and stats["written"] == 0
    gate.open()


@pytest.mark.parametrize("category", ["../escape", "/etc", "a/b", "", ".", "..", "x\0y", "x" * 65, 7])
def test_unsafe_categories_are_rejected(tmp_path: Path, category) -> None:
    with SnapshotWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="invalid snapshot category"):
            writer.submit(category, {})
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == sorted([RUN_MANIFEST_KEY, STATS_FILE_NAME, WRITERS_FOLDER])


@dataclasses.dataclass
class RobotPose:
    x: float
    joints: list


def test_odd_values_are_serialized_or_marked_never_raised(tmp_path: Path) -> None:
    cyclic: dict = {"name": "loop"}
    cyclic["self"] = cyclic
    record = {
        "nan": float("nan"), "inf": np.float32("inf"),
        "array_with_nan": np.array([1.0, np.nan, -np.inf]),
        "strided": np.arange(10.0)[::3], "big_endian": np.arange(3, dtype=">i4"),
        "complex": np.array([1 + 2j]), "strings": np.array(["a", "b"]),
        "set": {3}, "bytes": b"\x00\xff", "pose": RobotPose(0.5, [1, 2]),
        1: "int key", None: "none key", "huge": 2**80, "cycle": cyclic, "object": object(),
    }
    with SnapshotWriter(tmp_path) as writer:
        writer.submit("episodes", record)
        assert writer.flush(timeout=10)
        stats = writer.stats()
    (saved,) = load_records(tmp_path, "episodes")[0]
    assert saved["nan"] is None and saved["inf"] is None and saved["array_with_nan"] == [1.0, None, None]
    assert saved["strided"] == [0.0, 3.0, 6.0, 9.0] and saved["big_endian"] == [0, 1, 2]
    assert saved["complex"] == {"real": [1.0], "imag": [2.0]} and saved["strings"] == ["a", "b"]
    assert saved["set"] == [3] and saved["pose"] == {"x": 0.5, "joints": [1, 2]}
    assert saved["1"] == "int key" and saved["null"] == "none key"
    assert saved["huge"][PLACEHOLDER_KEY] == "int" and saved["object"][PLACEHOLDER_KEY] == "object"
    assert saved["cycle"]["self"][PLACEHOLDER_KEY] == "dict"
    assert stats["nonfinite_values"] == 4 and stats["placeholders"] == 3 and stats["failed"] == 0


def test_nonfinite_counting_ignores_real_nulls(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path) as writer:
        writer.submit("episodes", {"missing": None, "value": 1.0})
        writer.flush(10)
        assert writer.stats()["nonfinite_values"] == 0


def test_leftover_temp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "episodes"
    folder.mkdir()
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    stale = folder / temp_name("episodes_20250101_120000_00000001.json").replace(f".{os.getpid()}.", f".{dead_pid}.")
    stale.write_bytes(b"[{\"torn")
    assert list_snapshot_files(tmp_path, "episodes") == []
    with SnapshotWriter(tmp_path) as writer:
        writer.submit("episodes", {"index": 0})
    assert not stale.exists()
    assert written_indexes(tmp_path) == [0]


def test_read_only_save_dir_reports_clearly_and_keeps_accepting(tmp_path: Path, mount_tmpfs, caplog) -> None:
    save_dir = mount_tmpfs("ro,size=64k")
    writer = SnapshotWriter(save_dir / "run")
    for index in range(10):
        assert writer.submit("episodes", {"index": index})
    assert writer.flush(timeout=10) is False
    stats = writer.close()
    assert stats["failed"] == 10 and stats["written"] == 0 and stats["pending"] == 0
    assert any("Read-only file system" in message and str(save_dir) in message for message in stats["errors"])
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    snapshot_errors = [message for message in errors if f"could not write {save_dir / 'run'}:" in message]
    assert len(snapshot_errors) == 1  # ten failures, logged once, counted ten times


def test_full_disk_is_counted_and_writing_resumes_when_space_returns(tmp_path: Path, mount_tmpfs) -> None:
    save_dir = mount_tmpfs("size=256k")
    ballast = save_dir / "ballast"
    writer = SnapshotWriter(save_dir / "run")
    writer.submit("episodes", {"index": 0})
    assert writer.flush(10)
    fill_filesystem(ballast)
    big = {"payload": "x" * 20000}
    for _ in range(3):
        writer.submit("episodes", big)
    assert writer.flush(10) is False
    ballast.unlink()
    writer.submit("episodes", {"index": 1})
    assert writer.flush(10) is True
    stats = writer.close()
    assert stats["failed"] == 3 and stats["written"] == 2
    assert any("No space left" in message for message in stats["errors"])
    assert written_indexes(save_dir / "run") == [0, 1]
    assert not [path for path in (save_dir / "run" / "episodes").iterdir() if path.name.startswith(".")]


def test_stats_add_up(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, queue_size=8, policy="drop_newest") as writer:
        for index in range(100):
            writer.submit("episodes", {"index": index})
        writer.flush(10)
        stats = writer.stats()
    assert stats["submitted"] == stats["written"] + stats["dropped"] + stats["failed"] + stats["pending"] == 100
    assert stats["bytes_written"] == sum(path.stat().st_size for path in list_snapshot_files(tmp_path, "episodes"))
    assert math.isfinite(stats["write_latency_us"]["p99"])
    assert stats["thread_cpu_seconds"] > 0  # the writer thread reads its own CPU time


def test_attachments_are_stored_before_the_json_that_lists_them(tmp_path: Path) -> None:
    import hashlib

    written: list = []
    blob = bytes(range(256)) * 100
    with SnapshotWriter(tmp_path) as writer:
        writer.submit("checkpoints", lambda files: [{"timestep": 5, "files": files}],
                      attachments={".zip": lambda: blob, ".state.pkl": lambda: b"s"}, on_written=written.append)
        writer.submit("checkpoints", lambda files: [{"timestep": 6}], attachments={".zip": lambda: 1 / 0},
                      on_written=written.append)
        writer.flush(10)
        stats = writer.stats()
    (json_path,) = list_snapshot_files(tmp_path, "checkpoints")
    assert written == [str(json_path), None]
    (record,) = orjson.loads(json_path.read_bytes())
    stem = json_path.name.removesuffix(".json")
    assert record["files"]["zip"] == {"name": stem + ".zip", "path": str(tmp_path / "checkpoints" / (stem + ".zip")),
                                      "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    assert (tmp_path / "checkpoints" / record["files"]["zip"]["name"]).read_bytes() == blob
    assert (tmp_path / "checkpoints" / record["files"]["state.pkl"]["name"]).read_bytes() == b"s"
    assert stats["failed_by_category"] == {"checkpoints": 1} and "ZeroDivisionError" in stats["errors"][0]
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == sorted([json_path.name, stem + ".zip", stem + ".state.pkl"])


def test_an_evicted_snapshot_hears_none_and_flush_reports_the_drop(tmp_path: Path) -> None:
    writer, gate = gated_writer(tmp_path, queue_size=2, policy="drop_oldest")
    heard: dict[int, list] = {index: [] for index in range(4)}
    writer.submit("episodes", {"index": 0}, on_written=heard[0].append)
    assert gate.entered.wait(10)
    for index in (1, 2, 3):  # 1 is evicted by 3
        writer.submit("episodes", {"index": index}, on_written=heard[index].append)
    assert heard[1] == [None]
    gate.open()
    assert writer.flush(timeout=10) is False  # everything left is on disk, but one was dropped
    assert writer.flush(timeout=10) is True  # nothing new since
    writer.close()
    assert [len(paths) for paths in heard.values()] == [1, 1, 1, 1]
    assert all(paths[0] is not None for index, paths in heard.items() if index != 1)


def test_close_that_times_out_keeps_the_writer_covered_and_a_later_close_finishes(tmp_path: Path) -> None:
    from rtsave_async.writer import exit_hook

    writer, gate = gated_writer(tmp_path, exit_timeout=0.1)
    writer.submit("checkpoints", {"timestep": 1})
    assert writer.close()["pending"] == 1
    assert exit_hook.covers(writer)  # the atexit hook will wait for it again
    gate.open()
    stats = writer.close(timeout=10)
    assert stats["written"] == 1 and stats["pending"] == 0 and not exit_hook.covers(writer)
    assert (tmp_path / STATS_FILE_NAME).exists()


def test_a_failed_json_write_removes_the_attachments_it_listed(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path, sink=FailingSink(LocalSink(tmp_path)))
    heard: list = []
    writer.submit("checkpoints", lambda files: [{"files": files}], attachments={".zip": lambda: b"x" * 1000},
                  on_written=heard.append)
    assert writer.flush(timeout=10) is False
    writer.close()
    assert heard == [None]
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == []


def test_a_category_folder_removed_while_running_is_created_again(tmp_path: Path) -> None:
    import shutil

    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        writer.submit("episodes", {"index": 0})
        assert writer.flush(timeout=10)
        shutil.rmtree(tmp_path / "episodes")
        writer.submit("episodes", {"index": 1})
        assert writer.flush(timeout=10)
    assert written_indexes(tmp_path) == [1]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("policy", "drop-oldest", "policy must be one of 'block', 'drop_oldest', 'drop_newest'"),
    ("queue_size", "8", "queue_size must be a positive integer"),
    ("queue_size", 0, "queue_size must be a positive integer"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
    ("block_timeout", -1, "block_timeout must be a number >= 0 seconds"),
    ("exit_timeout", float("nan"), "exit_timeout must be a number >= 0 seconds"),
    ("drain_interval", "0.1", "drain_interval must be a number >= 0 seconds"),
])
def test_bad_settings_are_named_in_the_error(tmp_path: Path, option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SnapshotWriter(tmp_path, **{option: value})


def test_the_writer_and_readers_import_without_torch_or_sb3() -> None:
    from conftest import python_child

    child = python_child("""
        import sys
        from rtsave_async import SnapshotWriter, iter_records, load_records
        print(sorted(name for name in ("torch", "stable_baselines3") if name in sys.modules))
    """)
    stdout, stderr = child.communicate(timeout=60)
    assert stdout.strip() == "[]", stderr


def test_a_file_that_is_not_json_is_named_by_the_reader(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path) as writer:
        writer.submit("episodes", {"index": 0})
    (path,) = list_snapshot_files(tmp_path, "episodes")
    path.write_bytes(b"[{")  # damaged by something else than the writer
    with pytest.raises(ValueError, match=f"{path}: not a valid snapshot file"):
        load_records(tmp_path, "episodes")
