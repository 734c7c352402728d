"""Subprocesses that end in every way: what was submitted is on disk, nothing is torn."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import orjson
import pytest

from conftest import python_child
from rtsave_async import list_snapshot_files, load_records
from rtsave_async.writer import STATS_FILE_NAME
from tests.support.round_two_scenarios import PRODUCER_ENDS, run_slow_producer_end


@pytest.mark.parametrize("mode", PRODUCER_ENDS)
def test_every_submitted_record_is_on_disk_after_the_process_ends(tmp_path: Path, mode: str) -> None:
    assert run_slow_producer_end(tmp_path, mode).problems == []


@pytest.mark.parametrize("mode", PRODUCER_ENDS)
def test_saves_held_back_for_a_batch_are_on_disk_after_the_process_ends(tmp_path: Path, mode: str) -> None:
    assert run_slow_producer_end(tmp_path, mode, held=40).problems == []


def test_sigterm_flushes_then_chains_to_the_users_handler(tmp_path: Path) -> None:
    assert run_slow_producer_end(tmp_path, "chained_sigterm").problems == []  # exit status 7: the user's handler
    assert (tmp_path / "user_handler_ran").exists()


STREAMER = """
    import sys, time
    from rtsave_async import SnapshotWriter
    writer = SnapshotWriter(sys.argv[1], durable=sys.argv[2] == "durable")
    index = 0
    while True:
        writer.submit("episodes", [{"index": index, "payload": "x" * 5000, "values": list(range(200))}])
        index += 1
        if index % 50 == 0:
            time.sleep(0.001)
"""


@pytest.mark.parametrize("trial", range(4))
def test_sigkill_mid_stream_never_leaves_a_torn_file(tmp_path: Path, trial: int) -> None:
    child = python_child(STREAMER, str(tmp_path), "durable" if trial % 2 else "fast")
    folder = tmp_path / "episodes"
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.json")) if folder.exists() else []) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.2))
    child.kill()
    child.wait(timeout=30)
    files = list_snapshot_files(tmp_path, "episodes")
    assert files, child.stderr.read()
    indexes = [orjson.loads(path.read_bytes())[0]["index"] for path in files]  # every one parses
    assert indexes == list(range(len(indexes)))  # and none is missing before the last
    leftovers = [path.name for path in folder.iterdir() if path not in files]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers)


FORKER = """
    import os, sys, time
    from rtsave_async import SnapshotWriter
    from rtsave_async.sinks import LocalSink
    from tests.support.sinks import SlowSink

    writer = SnapshotWriter(sys.argv[1], sink=SlowSink(LocalSink(sys.argv[1]), 0.002))
    for index in range(200):
        writer.submit("episodes", {"index": index})
    pid = os.fork()
    if pid == 0:
        try:
            writer.submit("episodes", {"index": -1})
            print("child submitted", flush=True)
        except RuntimeError as exc:
            print("child refused:", exc, flush=True)
        writer.flush(1)
        sys.exit(0)  # runs atexit in the child: it must not write the parent's records
    _, status = os.waitpid(pid, 0)
    print("child status", status, flush=True)
    writer.close()
"""


def test_forked_child_neither_writes_nor_flushes_the_parents_records(tmp_path: Path) -> None:
    child = python_child(FORKER, str(tmp_path))
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert "child refused: this SnapshotWriter belongs to the parent process" in stdout
    assert "child status 0" in stdout
    indexes = [snapshot[0]["index"] for snapshot in load_records(tmp_path, "episodes")]
    assert indexes == list(range(200))  # each once, in order, none from the child


LOCK_HELD_AT_FORK = """
    import os, sys, threading
    from rtsave_async import SnapshotWriter

    writer = SnapshotWriter(sys.argv[1])
    holding, release = threading.Event(), threading.Event()

    def hold_locks():  # a producer thread inside put() and the writer inside flush() at fork time
        with writer._queue._producers, writer._queue._room, writer._done:
            holding.set()
            release.wait()

    threading.Thread(target=hold_locks, daemon=True).start()
    holding.wait()
    pid = os.fork()
    if pid == 0:
        print("child flush", writer.flush(1), "close", writer.close()["submitted"], flush=True)
        os._exit(0)
    release.set()
    _, status = os.waitpid(pid, 0)
    print("child status", status, flush=True)
"""


def test_a_fork_while_other_threads_hold_the_writers_locks_does_not_hang_the_child(tmp_path: Path) -> None:
    child = python_child(LOCK_HELD_AT_FORK, str(tmp_path))
    stdout, stderr = child.communicate(timeout=60)
    assert "child flush False close 0" in stdout and "child status 0" in stdout, stderr


SIGNAL_INSIDE_PUT = """
    import os, signal, sys
    from rtsave_async import SnapshotWriter

    writer = SnapshotWriter(sys.argv[1], exit_timeout=30)
    for index in range(300):
        writer.submit("episodes", {"index": index})
    with writer._queue._producers:  # as if SIGTERM arrived while the main thread is inside put()
        signal.raise_signal(signal.SIGTERM)
"""


def test_sigterm_while_the_main_thread_is_inside_submit_still_writes_everything(tmp_path: Path) -> None:
    child = python_child(SIGNAL_INSIDE_PUT, str(tmp_path))
    started = time.monotonic()
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGTERM, stderr
    assert time.monotonic() - started < 25  # far below exit_timeout: the writer never waited for the lock
    indexes = [snapshot[0]["index"] for snapshot in load_records(tmp_path, "episodes")]
    assert indexes == list(range(300))


SLOW_FINAL_CHECKPOINT = """
    import sys, time
    from rtsave_async import SnapshotWriter

    def slow_encoder():
        time.sleep(1.5)
        return b"model" * 100

    writer = SnapshotWriter(sys.argv[1], exit_timeout=1.0)
    writer.submit("checkpoints", lambda files: [{"files": files}], attachments={".zip": slow_encoder})
    writer.close()  # times out while the attachment is still being encoded
    print("closed", flush=True)
"""


def test_a_close_that_timed_out_is_finished_by_the_exit_hook(tmp_path: Path) -> None:
    child = python_child(SLOW_FINAL_CHECKPOINT, str(tmp_path))
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0 and "closed" in stdout, stderr
    assert [path.suffix for path in sorted((tmp_path / "checkpoints").iterdir())] == [".json", ".zip"]
    assert orjson.loads((tmp_path / STATS_FILE_NAME).read_bytes())["written"] == 1


def test_the_exit_hook_drains_anything_with_flush_close_and_exit_timeout() -> None:
    child = python_child("""
        from rtsave_async.writer import exit_hook

        class Uploader:  # not a SnapshotWriter: the hook only needs these members
            exit_timeout = 1.0
            def flush(self, timeout=None):
                return True
            def close(self, timeout=None):
                print("closed within", round(timeout), flush=True)
            def after_fork_in_child(self):
                pass

        uploader = Uploader()
        exit_hook.register(uploader)
    """)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0 and stdout.strip() == "closed within 1", stderr
