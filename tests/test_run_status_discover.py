"""readers.status (running / finished / crashed) and readers.discover, on runs of real writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rtsave_async import SnapshotWriter, open_run
from rtsave_async.readers.discover import find_runs
from rtsave_async.readers.status import STALE_AFTER_SECONDS, run_status

CHILD = """
import sys, time
from rtsave_async import SnapshotWriter
writer = SnapshotWriter(sys.argv[1])
writer.submit("episodes", [{"episode": 1}])
writer.flush()
print("ready", flush=True)
time.sleep(600)
"""


def test_open_writer_is_running_and_closed_writer_finished(tmp_path):
    writer = SnapshotWriter(tmp_path)
    writer.submit("episodes", [{"episode": 1}])
    writer.flush()
    try:
        status = run_status(open_run(tmp_path))
        assert status.state == "running"
        assert list(status.writers.values()) == ["running"]
        assert status.last_update is not None and abs(time.time() - status.last_update) < STALE_AFTER_SECONDS
    finally:
        writer.close()
    assert run_status(open_run(tmp_path)).state == "finished"


def test_stale_manifest_means_crashed(tmp_path):
    writer = SnapshotWriter(tmp_path)
    writer.submit("episodes", [{"episode": 1}])
    writer.flush()
    try:
        later = time.time() + STALE_AFTER_SECONDS + 60
        assert run_status(open_run(tmp_path), now=later).state == "crashed"
    finally:
        writer.close()


def test_killed_writer_is_crashed_at_once(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not open_run(tmp_path).writer_stats()["writers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run_status(open_run(tmp_path)).state == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert run_status(open_run(tmp_path)).state == "crashed"


def test_second_writer_running_keeps_run_running(tmp_path):
    first = SnapshotWriter(tmp_path, writer_name="first")
    first.submit("episodes", [{"episode": 1}])
    first.close()
    second = SnapshotWriter(tmp_path, writer_name="second")
    second.submit("episodes", [{"episode": 2}])
    second.flush()
    try:
        status = run_status(open_run(tmp_path))
        assert status.writers == {"first": "finished", "second": "running"}
        assert status.state == "running"
    finally:
        second.close()


def test_find_runs_in_a_parent_folder(tmp_path):
    for name in ("alpha/realtime_data", "beta"):
        writer = SnapshotWriter(tmp_path / name)
        writer.submit("episodes", [{"episode": 1}])
        writer.close()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a run")
    runs = find_runs(tmp_path)
    assert list(runs) == ["alpha/realtime_data", "beta"]
    assert [record.data["episode"] for record in open_run(runs["beta"]).records("episodes", with_metadata=True)] == [1]
    assert list(find_runs(tmp_path / "beta")) == [""]
