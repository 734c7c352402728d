"""Reliability, round two (issue 12): what a hostile week of real use broke.

Each test is a scenario that failed before its fix: the writer thread surviving what
hooks and encoders raise, bounded retries, checkpoints that never list a missing file,
publishing that cannot overwrite, prompt exits with the stats file written, deletes that
never leave the save_dir, and two live writers sharing one folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import orjson
import pytest

from rtsave_async.checkpoints.retention import prune_checkpoints
from rtsave_async.names import writer_tag
from rtsave_async.sinks import LocalSink
from rtsave_async.writer import STATS_FILE_NAME
from rtsave_async.writer.snapshot_writer import SnapshotWriter
from conftest import python_child
from support.sinks import DyingSink, GatedSink, VanishingRootSink


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt, GeneratorExit])
@pytest.mark.parametrize("where", ["hook", "awaited hook", "encoder", "records"])
def test_the_writer_thread_survives_whatever_a_hook_or_encoder_raises(tmp_path: Path, raised: type, where: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    def hook(url: str | None) -> None:
        raise raised("from the hook")

    async def failing_follow_up() -> None:
        raise raised("from the awaited hook")

    def encoder() -> bytes:
        raise raised("from the encoder")

    def records(files: dict) -> dict:
        raise raised("from the records")

    submit = {
        "hook": {"records": {"a": 1}, "on_written": hook},
        "awaited hook": {"records": {"a": 1}, "on_written": lambda url: failing_follow_up()},
        "encoder": {"records": {"a": 1}, "attachments": {".bin": encoder}},
        "records": {"records": records, "attachments": {".bin": lambda: b"x"}},
    }[where]
    with SnapshotWriter(tmp_path, drain_interval=0) as writer:
        writer.submit("custom", **submit)
        writer.flush(5)
        for index in range(5):
            assert writer.submit("custom", {"after": index})
        writer.flush(5)
        stats = writer.stats()
    assert stats["written"] == 6 - (where in ("encoder", "records"))
    assert stats["pending"] == 0
    assert raised.__name__ in " ".join(stats["errors"])


def test_a_dead_writer_thread_is_reported_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = SnapshotWriter(tmp_path, drain_interval=0, sink=DyingSink(LocalSink(tmp_path)))
    writer.submit("custom", {"a": 1})
    writer._thread.join(5)
    with caplog.at_level(logging.ERROR, logger="rtsave_async"):
        assert not writer.submit("custom", {"a": 2})
        assert not writer.flush()  # no timeout: must not wait forever
    stats = writer.close()
    assert stats["writer_died"] is True
    assert stats["failed"] >= 1 and stats["submitted"] == 2
    assert any("writer thread" in message for message in stats["errors"])
    assert "writer thread" in caplog.text


@pytest.mark.parametrize("format_name", ["json", "jsonl.zst"])
def test_a_dangling_symlink_as_a_category_folder_is_one_counted_failure(tmp_path: Path, format_name: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    (save_dir / "episodes").symlink_to(tmp_path / "gone")
    with caplog.at_level(logging.ERROR, logger="rtsave_async"):
        with SnapshotWriter(save_dir, drain_interval=0, format=format_name) as writer:
            for index in range(3):
                writer.submit("episodes", {"episode": index})
                writer.submit("custom", {"index": index})
            assert not writer.flush(10)
            stats = writer.stats()
    assert stats["failed_by_category"] == {"episodes": 3}
    assert stats["written_by_category"] == {"custom": 3}
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "dangling symlink" in errors[0] and str(save_dir / "episodes") in errors[0]
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("removed_before", [".state.npz", ".json"])
def test_a_save_dir_removed_mid_checkpoint_fails_it_instead_of_listing_missing_files(tmp_path: Path,
                                                                                    removed_before: str) -> None:
    sink = VanishingRootSink(LocalSink(tmp_path), removed_before)
    with SnapshotWriter(tmp_path, drain_interval=0, sink=sink) as writer:
        writer.submit("checkpoints", lambda files: {"files": files},
                      attachments={".zip": lambda: b"model" * 100, ".state.npz": lambda: b"state"})
        assert not writer.flush(10)
        writer.submit("checkpoints", lambda files: {"files": files}, attachments={".zip": lambda: b"model"})
        writer.flush(10)
        stats = writer.stats()
    assert sink.removed
    assert stats["failed_by_category"] == {"checkpoints": 1}
    assert stats["written_by_category"] == {"checkpoints": 1}
    assert "missing" in " ".join(stats["errors"])
    for listing in (tmp_path / "checkpoints").glob("*.json"):  # what is listed is there, whole
        for attachment in orjson.loads(listing.read_bytes())["files"].values():
            assert Path(attachment["path"]).stat().st_size == attachment["bytes"]


RACE_KEYS = 4000
_RACER = """
import asyncio, sys
sys.path.insert(0, sys.argv[5])
from rtsave_async.checkpoints.retention import prune_checkpoints
from rtsave_async.names import writer_tag
from rtsave_async.sinks import LocalSink
from support.sinks import NoHardLinkLocalSink

async def race(root, name, keys, sink_class):
    sink = {"LocalSink": LocalSink, "NoHardLinkLocalSink": NoHardLinkLocalSink}[sink_class](root)
    while open(root + "/start").read() != "go":
        await asyncio.sleep(0.001)
    won = []
    for index in range(keys):
        try:
            await sink.create(f"episodes/{index:05d}.json", name.encode())
            won.append(index)
        except FileExistsError:
            pass
    print(" ".join(map(str, won)))

asyncio.run(race(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


@pytest.mark.parametrize("sink_class", ["LocalSink", "NoHardLinkLocalSink"])
def test_two_writers_racing_for_the_same_names_never_overwrite(tmp_path: Path, sink_class: str) -> None:
    (tmp_path / "start").write_text("wait")
    racers = {name: python_child(_RACER, str(tmp_path), name, str(RACE_KEYS), sink_class, str(Path(__file__).parent))
              for name in ("first", "second")}
    (tmp_path / "start").write_text("go")
    won = {}
    for name, racer in racers.items():
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        won[name] = {int(index) for index in out.split()}
    assert not won["first"] & won["second"]  # each name published once: no success was overwritten
    assert won["first"] | won["second"] == set(range(RACE_KEYS))
    for name, indices in won.items():
        assert all((tmp_path / "episodes" / f"{index:05d}.json").read_text() == name for index in indices)


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


@pytest.mark.parametrize("end, signals", [
    ("close", [signal.SIGTERM]),  # lands inside close()'s flush
    ("wait", [signal.SIGTERM, signal.SIGTERM]),  # the second inside the first one's drain
    ("exit", [signal.SIGINT]),  # Ctrl-C during the exit hook's drain
])
def test_a_signal_inside_the_exit_drain_still_ends_with_the_stats_written(tmp_path: Path, end: str,
                                                                         signals: list[int]) -> None:
    child = python_child(_SIGNALLED_CHILD, str(tmp_path), end)
    assert child.stdout.readline().strip() == "queued"
    for signum in signals:
        time.sleep(0.3)  # let the drain begin: the signal must land inside it
        child.send_signal(signum)
    out, err = child.communicate(timeout=60)
    stats = orjson.loads((tmp_path / STATS_FILE_NAME).read_bytes())
    assert stats["written"] == stats["submitted"] == 150, err
    if signals[0] == signal.SIGTERM:
        assert child.returncode == -signal.SIGTERM


def test_retention_and_temp_cleanup_never_delete_through_a_symlink_leaving_the_save_dir(tmp_path: Path) -> None:
    outside, save_dir = tmp_path / "someone_elses", tmp_path / "run"
    outside.mkdir()
    save_dir.mkdir()
    (save_dir / "checkpoints").symlink_to(outside)
    kept = [f"checkpoint_20260101_000000_0000000{seq}_abcdef{suffix}" for seq in (1, 2) for suffix in (".json", ".zip")]
    kept.append(".checkpoint_x.zip.999999999.0.tmp")  # a "dead" temp name
    for name in kept:
        (outside / name).write_bytes(b"not yours")

    async def prune() -> None:
        sink = LocalSink(save_dir)
        await sink.start()
        await prune_checkpoints(sink, keep_last=1)

    with pytest.raises(PermissionError, match="symlinked folder"):
        asyncio.run(prune())
    assert sorted(path.name for path in outside.iterdir()) == sorted(kept)


def _checkpoint(writer: SnapshotWriter, keep_last: int = 1) -> bool:
    """Submit a small checkpoint whose retention runs as CheckpointSaver's does."""
    return writer.submit("checkpoints", lambda files: {"files": files},
                         attachments={".zip": lambda: b"model" * 50, ".state.npz": lambda: b"state"},
                         on_written=lambda url: prune_checkpoints(writer.sink, keep_last, writer_id=writer.writer_id))


def test_two_live_writers_in_one_folder_never_delete_each_others_checkpoints(tmp_path: Path) -> None:
    paused_sink = GatedSink(LocalSink(tmp_path), only=".json", blocking=False)
    paused = SnapshotWriter(tmp_path, drain_interval=0, sink=paused_sink)  # like a SAC process under SIGSTOP
    _checkpoint(paused)
    assert paused_sink.entered.wait(10)  # its attachments are stored, its JSON is on its way
    with SnapshotWriter(tmp_path, drain_interval=0) as other:
        for _ in range(3):
            _checkpoint(other)
            assert other.flush(10)
        paused_sink.open()
        stats = paused.close()
        listings = sorted((tmp_path / "checkpoints").glob("*.json"))
    assert stats["written"] == 1 and stats["failed"] == 0, stats["errors"]
    assert len(listings) == 2  # each live writer's newest
    for listing in listings:
        for attachment in orjson.loads(listing.read_bytes())["files"].values():
            assert Path(attachment["path"]).stat().st_size == attachment["bytes"]
    names = [path.name for path in (tmp_path / "checkpoints").iterdir()]
    assert len(names) == len(set(names)) == 6
    total = orjson.loads((tmp_path / STATS_FILE_NAME).read_bytes())
    assert sorted(total["writers"]) == sorted([paused.writer_id, other.writer_id]) and total["written"] == 4


def test_retention_still_removes_what_a_finished_writer_left(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, drain_interval=0) as finished:
        for _ in range(2):
            finished.submit("checkpoints", {"old": True}, attachments={".zip": lambda: b"old model"})
    (tmp_path / "checkpoints" / ".orphan").touch()
    with SnapshotWriter(tmp_path, drain_interval=0) as resumed:
        _checkpoint(resumed)
    tags = {name.split("_")[-1].split(".")[0] for name in os.listdir(tmp_path / "checkpoints")
            if not name.startswith(".")}
    assert tags == {writer_tag(resumed.writer_id)}
