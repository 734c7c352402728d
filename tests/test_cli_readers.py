"""rtsave inspect / tail / export / archive on real runs: finished, being written, crashed, parents, broken."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cli_support import child_env
from rtsave_async import open_run
from rtsave_async.formats.archive import archive_run
from support.runs import ENVS, finished_run, start_run, write_saves

pytest.importorskip("pyarrow")
pandas = pytest.importorskip("pandas")

KILLED_WRITER = """
import random, sys, time
sys.path.insert(0, sys.argv[2])
from support.runs import start_run, write_saves
writer = start_run(sys.argv[1])
write_saves(writer, 0, 5, random.Random(0))
writer.flush()
print("ready", flush=True)
time.sleep(600)
"""
ARCHIVER = """
import sys
from rtsave_async.formats.archive import archive_run
archive_run(sys.argv[1], sys.argv[2], records_per_file=8)
"""
TESTS = Path(__file__).parent


def rtsave(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsave_async", *args], capture_output=True, text=True, timeout=300,
                          env=child_env(COLUMNS="200"))


def inspect_json(path: Path) -> dict:
    result = rtsave("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def snapshot(path: Path) -> dict[str, bytes]:
    """Every record of every category with its metadata, as bytes to compare."""
    run = open_run(path, errors="raise")
    return {category: orjson.dumps([(record.data, record.category, record.writer, record.seq, record.time)
                                    for record in run.records(category, with_metadata=True, branches="all")])
            for category in run.categories()}


def test_inspect_finished_run(tmp_path):
    finished_run(tmp_path / "run", saves=30)
    summary = inspect_json(tmp_path / "run")
    assert summary["status"]["state"] == "finished"
    assert summary["algorithm"] == "PPO" and summary["env"]["name"] == "CartPole-v1"
    assert summary["progress"]["timesteps"] == 3000 and summary["progress"]["total_timesteps"] == 100_000
    assert summary["episodes"]["total"] == ENVS * 30 and summary["episodes"]["successes"] == ENVS * 7
    records = list(open_run(tmp_path / "run").records("episodes"))
    returns = [episode["return"] for record in records for episode in record["finished_episodes"]]
    assert summary["episodes"]["window"]["episodes"] == 60
    assert summary["episodes"]["window"]["mean_return"] == pytest.approx(sum(returns) / len(returns))
    assert summary["episodes"]["mean_return"] == pytest.approx(sum(returns) / len(returns))
    assert summary["curriculum"]["rand_power"] == [0.1, 0.1]
    assert summary["writer_health"]["ok"] and summary["writer_health"]["written"] == 91
    assert inspect_json(tmp_path / "run") | {} == summary | {"status": summary["status"]}
    window = rtsave("inspect", str(tmp_path / "run"), "--json", "--window", "10")
    assert json.loads(window.stdout)["episodes"]["window"]["mean_return"] == pytest.approx(sum(returns[-10:]) / 10)
    shown = rtsave("inspect", str(tmp_path / "run"))
    assert shown.returncode == 0 and "finished" in shown.stdout and "CartPole-v1" in shown.stdout


def test_inspect_and_tail_a_run_being_written(tmp_path):
    """tail shows every new record exactly once, across segment rotations (segment_age 1 s)."""
    rng = random.Random(1)
    writer = start_run(tmp_path, format="jsonl.zst", segment_age=1.0)
    try:
        write_saves(writer, 0, 3, rng)
        writer.flush()
        assert inspect_json(tmp_path)["status"]["state"] == "running"
        follower = subprocess.Popen([sys.executable, "-m", "rtsave_async", "tail", str(tmp_path), "--category",
                                     "episodes", "--fields", "timestep,env_id", "--lines", "1000", "--interval",
                                     "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=child_env())
        for first in range(3, 12, 3):
            write_saves(writer, first, 3, rng)
            writer.flush()
            time.sleep(1.2)  # the open segment ages past segment_age and is published
        time.sleep(1.0)
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    finally:
        writer.close()
    assert follower.returncode == 0, err
    shown = [line.split(" ", 2)[2] for line in out.splitlines()]
    # Whenever its first poll came, every record shows once: the written ones first, then each new one.
    assert shown == [f"timestep={(save + 1) * 100} env_id={env}" for save in range(12) for env in range(ENVS)]
    assert len([key for key in os.listdir(tmp_path / "episodes")]) >= 3  # segments rotated meanwhile


def test_crashed_run_inspects_as_crashed_and_is_not_archived(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(TESTS)], stdout=subprocess.PIPE,
                             text=True, env=child_env())
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert inspect_json(tmp_path)["status"]["state"] == "crashed"
    assert rtsave("export", str(tmp_path), "--format", "csv", "--out", str(tmp_path / "e.csv")).returncode == 0
    refused = rtsave("archive", str(tmp_path))
    assert refused.returncode == 2 and "crashed" in refused.stderr and str(tmp_path) in refused.stderr


def test_parent_folder_lists_its_runs(tmp_path):
    finished_run(tmp_path / "alpha" / "realtime_data", saves=4)
    finished_run(tmp_path / "beta", saves=2)
    rows = inspect_json(tmp_path)["runs"]
    assert [(row["name"], row["state"], row["timesteps"]) for row in rows] == [
        ("alpha/realtime_data", "finished", 400), ("beta", "finished", 200)]
    table = rtsave("inspect", str(tmp_path))
    assert table.returncode == 0 and "alpha/realtime_data" in table.stdout and "beta" in table.stdout


@pytest.mark.parametrize("command", [["inspect"], ["tail"], ["export", "--format", "csv", "--out", "x.csv"],
                                     ["archive"]])
def test_missing_empty_and_damaged_folders_are_one_line(tmp_path, command):
    (tmp_path / "empty" / "episodes").mkdir(parents=True)
    (tmp_path / "notes").mkdir()
    finished_run(tmp_path / "damaged", saves=2)
    victim = sorted((tmp_path / "damaged" / "episodes").iterdir())[0]
    victim.write_text('[{"timestep": 1')
    for folder, words in (("missing", "no such"), ("empty", "empty run"), ("notes", "not an rtsave run"),
                          ("damaged", victim.name)):
        args = [command[0], str(tmp_path / folder), *command[1:]]
        if command[0] == "export":
            args[-1] = str(tmp_path / "x.csv")
        result = rtsave(*args)
        assert result.returncode == 2, (folder, result)
        assert result.stderr.count("\n") == 1 and words in result.stderr and "Traceback" not in result.stderr


def test_every_command_has_help_with_an_example():
    for command in ("inspect", "tail", "export", "archive"):
        result = rtsave(command, "--help")
        assert result.returncode == 0 and f"example:\n  rtsave {command} " in result.stdout


@pytest.mark.parametrize("format", ["parquet", "csv", "jsonl"])
def test_export_round_trip(tmp_path, format):
    finished_run(tmp_path / "run", saves=20)
    out = tmp_path / f"episodes.{format}"
    result = rtsave("export", str(tmp_path / "run"), "--format", format, "--out", str(out))
    assert result.returncode == 0, result.stderr
    expected = open_run(tmp_path / "run").to_pandas("episodes")
    records = list(open_run(tmp_path / "run").records("episodes"))
    back = {"parquet": pandas.read_parquet, "csv": pandas.read_csv,
            "jsonl": lambda path: pandas.read_json(path, lines=True, precise_float=True)}[format](out)
    assert len(back) == len(records) == 40 and list(back.columns) == list(expected.columns)
    assert back["detailed_info.robot_state.position.x"].tolist() == [
        record["detailed_info"]["robot_state"]["position"]["x"] for record in records]
    joints = back["detailed_info.robot_state.joint_positions"].tolist()
    if format == "csv":
        joints = [json.loads(text) for text in joints]
    assert [list(value) for value in joints] == [record["detailed_info"]["robot_state"]["joint_positions"]
                                                 for record in records]


@pytest.mark.parametrize("format", ["parquet", "jsonl.zst"])
def test_archive_then_read_gives_identical_records(tmp_path, format):
    finished_run(tmp_path, saves=25)
    before = snapshot(tmp_path)
    frame_before = open_run(tmp_path).to_pandas("episodes")
    result = rtsave("archive", str(tmp_path), "--format", format)
    assert result.returncode == 0, result.stderr
    assert "smaller" in result.stdout or "larger" in result.stdout
    assert snapshot(tmp_path) == before
    pandas.testing.assert_frame_equal(open_run(tmp_path).to_pandas("episodes"), frame_before)
    files = [name for name in os.listdir(tmp_path / "episodes")]
    assert len(files) == 1 and files[0].endswith(".parquet" if format == "parquet" else ".jsonl.zst")


def test_archive_refuses_a_running_run(tmp_path):
    writer = start_run(tmp_path)
    try:
        writer.flush()
        result = rtsave("archive", str(tmp_path))
    finally:
        writer.close()
    assert result.returncode == 2 and "running" in result.stderr


@pytest.mark.parametrize("kill_when", ["archive files appear", "archive published"])
def test_sigkill_during_archive_loses_nothing(tmp_path, kill_when):
    finished_run(tmp_path, saves=60)
    before = snapshot(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", ARCHIVER, str(tmp_path), "parquet"], env=child_env())
    try:
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            archives = os.listdir(tmp_path / "archives") if (tmp_path / "archives").is_dir() else []
            if kill_when == "archive files appear" and any(name.endswith(".parquet") for name in
                                                           os.listdir(tmp_path / "episodes")):
                break
            if kill_when == "archive published" and any(not name.endswith(".pending.json") for name in archives):
                break
            time.sleep(0.001)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL  # killed in the middle, not finished
    assert snapshot(tmp_path) == before
    archive_run(str(tmp_path), "parquet")  # finishes or clears what the killed one left, then archives
    assert snapshot(tmp_path) == before
    assert all(name.endswith(".parquet") for name in os.listdir(tmp_path / "episodes"))
    assert not [name for name in os.listdir(tmp_path / "archives") if name.endswith(".pending.json")]


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """``rtsave tail RUN | head``: more than a pipe buffer of lines, the reader leaves: exit 0, no message."""
    finished_run(tmp_path, saves=300)
    pipeline = subprocess.run(["bash", "-c", f'{sys.executable} -m rtsave_async tail {tmp_path} --lines 100000 | '
                               f'head -c 1; exit "${{PIPESTATUS[0]}}"'], capture_output=True, text=True,
                              env=child_env(), timeout=120)
    assert (pipeline.returncode, len(pipeline.stdout), pipeline.stderr) == (0, 1, "")
