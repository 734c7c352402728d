"""Runs in S3-compatible object storage, against a real S3 server on loopback (moto).

Nothing here mocks s3fs: the writer's uploader, the readers and ``rtsave sync`` talk
HTTP to ``tests/support/s3.py``'s server, which is also stopped and restarted for the
outage test.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from conftest import PROJECT_ROOT, python_child
from rtsave_async import ComprehensiveSavingCallback, SnapshotWriter
from rtsave_async.checkpoints import load_checkpoint
from rtsave_async.readers import find_runs, open_run
from rtsave_async.readers.remote_store import FsspecRunStore
from support.s3 import ACCESS_KEY, SECRET_KEY
from support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("s3_server")
UPLOAD_ERROR = "could not upload to"


def records_by_category(run) -> dict[str, list]:
    return {category: list(run.records(category)) for category in run.categories()}


def upload_errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if UPLOAD_ERROR in record.getMessage()]


def assert_no_credentials(texts) -> None:
    for text in texts:
        assert SECRET_KEY not in text and ACCESS_KEY not in text


class ServerOutage(BaseCallback):
    """Stops the S3 server at timestep ``stop_at``; starts it again at ``start_at`` once
    the writer's uploader has counted a failed upload (waiting for that there if need
    be, so the outage is seen whatever the machine's speed). Training steps on between."""

    def __init__(self, server, saving: ComprehensiveSavingCallback, stop_at: int, start_at: int):
        super().__init__()
        self.server, self.saving, self.stop_at, self.start_at = server, saving, stop_at, start_at
        self.down = False
        self.steps_while_down = 0

    def _on_step(self) -> bool:
        if self.num_timesteps == self.stop_at:
            self.server.stop()
            self.down = True
        elif self.down:
            self.steps_while_down += 1
            if self.num_timesteps >= self.start_at and wait_until(
                    lambda: self.saving.writer.stats()["upload"]["errors"] > 0, 60):
                self.server.start()
                self.down = False
        return True


def train_cartpole(save_dir, timesteps: int = 256, extra_callbacks=(), **writer_options):
    """PPO on CartPole with every category saved; ``extra_callbacks``: functions of the saving callback."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    saving = ComprehensiveSavingCallback(save_dir, save_frequency=32, checkpoint_frequency=128,
                                         total_timesteps=timesteps, writer_options=writer_options)
    model.learn(timesteps, callback=[saving, *(make(saving) for make in extra_callbacks)])
    env.close()
    return model, saving


# ---------------------------------------------------------------------------- read back
@pytest.mark.parametrize("format", ["json", "jsonl.zst"])
def test_run_trained_to_s3_has_the_seed_layout_and_reads_back_as_the_spool(s3_server, bucket, tmp_path, format):
    url = f"s3://{bucket}/models/demo/realtime_data"
    _, saving = train_cartpole(url, spool_dir=tmp_path / "spool", format=format)
    stats = saving.writer_stats
    assert stats["save_dir"] == url and stats["upload"]["pending_files"] == 0 and stats["upload"]["errors"] == 0
    keys = s3_server.keys(bucket, "models/demo/realtime_data/")
    folders = {key.split("/")[3] for key in keys if key.count("/") > 3}
    assert {"episodes", "environment_states", "learning_metrics", "hyperparameters", "checkpoints",
            "writers"} <= folders
    assert "models/demo/realtime_data/run.json" in keys
    assert not any(".parts/" in key or key.endswith(".open") for key in keys)  # all published at close
    remote, local = open_run(url), open_run(tmp_path / "spool")
    assert records_by_category(remote) == records_by_category(local)
    assert [c.timestep for c in remote.checkpoints()] == [c.timestep for c in local.checkpoints()] == [128, 256]
    assert remote.checkpoints()[-1].path.startswith(f"s3://{bucket}/")
    all_text = [str(stats)] + [s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read().decode(
        "utf-8", "replace") for key in keys if key.endswith(".json")]
    assert_no_credentials(all_text)


def test_remote_reader_follows_an_open_segment_while_it_is_written(bucket, tmp_path):
    url = f"s3://{bucket}/live"
    writer = SnapshotWriter(url, format="jsonl.zst", spool_dir=tmp_path / "spool", upload_interval=0.2)
    cursor = None
    seen: list[int] = []
    try:
        for batch in range(5):
            for i in range(batch * 20, batch * 20 + 20):
                assert writer.submit("episodes", {"i": i})
            writer.flush()
            if cursor is None:
                assert wait_until(lambda: FsspecRunStore(url).exists("run.json"))
                cursor = open_run(url).cursor("episodes")
            expected = list(range(batch * 20 + 20))
            assert wait_until(lambda: seen.extend(r.data["i"] for r in cursor.poll()) or seen == expected), seen
        store = FsspecRunStore(url)
        assert any(key.endswith(".open") for key in store.list("episodes"))  # read as parts, still open
    finally:
        writer.close()
    assert not cursor.poll()  # published under its final name: nothing is read twice
    assert [r["i"] for r in open_run(url).records("episodes")] == list(range(100))


def test_two_writers_of_one_run_prefix_merge_in_time_order(bucket, tmp_path):
    url = f"s3://{bucket}/sweep/run"
    writers = [SnapshotWriter(url, format="jsonl.zst", spool_dir=tmp_path / f"host{n}", writer_name=f"rank{n}",
                              upload_interval=0.2) for n in range(2)]
    for i in range(40):
        writers[i % 2].submit("episodes", {"i": i})
        time.sleep(0.002)  # distinct write times
    for writer in writers:
        writer.close()
    run = open_run(url)
    records = list(run.records("episodes", with_metadata=True))
    assert [r.data["i"] for r in records] == list(range(40))
    assert {r.writer for r in records} == {"rank0", "rank1"}
    assert sorted(run.manifest()["writers"]) == ["rank0", "rank1"]
    assert sorted(run.writer_stats()["writers"]) == ["rank0", "rank1"]
    assert list(find_runs(f"s3://{bucket}/sweep")) == ["run"]  # a parent prefix lists its runs


def test_checkpoint_retention_prunes_the_bucket_too(s3_server, bucket, tmp_path):
    url = f"s3://{bucket}/kept"
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    saving = ComprehensiveSavingCallback(url, checkpoint_frequency=128, checkpoint_options={"keep_last": 1},
                                         writer_options={"spool_dir": tmp_path / "spool"})
    model.learn(512, callback=saving)
    env.close()
    remote = sorted(key.rpartition("/")[2] for key in s3_server.keys(bucket, "kept/checkpoints/"))
    assert remote == sorted(os.listdir(tmp_path / "spool" / "checkpoints"))
    assert [c.timestep for c in open_run(url).checkpoints()] == [512]


# ---------------------------------------------------------------------------- faults
def test_server_outage_mid_training_loses_and_duplicates_nothing(s3_server, bucket, tmp_path, caplog):
    url = f"s3://{bucket}/outage"
    outages = []

    def outage(saving):
        outages.append(ServerOutage(s3_server, saving, stop_at=96, start_at=256))
        return outages[-1]

    with caplog.at_level(logging.WARNING, logger="rtsave_async"):
        try:
            _, saving = train_cartpole(url, timesteps=1024, extra_callbacks=[outage], spool_dir=tmp_path / "spool",
                                       format="jsonl.zst", upload_interval=0.2, exit_timeout=60)
        finally:
            if outages and outages[0].down:
                s3_server.start()
    stats = saving.writer_stats
    assert not outages[0].down, "the uploader counted no error while the server was down"
    assert outages[0].steps_while_down > 0 and stats["failed"] == stats["dropped"] == 0
    assert stats["upload"]["errors"] >= 1 and stats["upload"]["pending_files"] == 0
    assert len(upload_errors(caplog)) == 1, upload_errors(caplog)
    assert url in upload_errors(caplog)[0]
    assert any("resumed after" in record.getMessage() for record in caplog.records)
    remote, local = open_run(url), open_run(tmp_path / "spool")
    assert records_by_category(remote) == records_by_category(local)
    for category, written in stats["written_by_category"].items():  # every save exactly once
        saves = remote.saves(category)
        assert len(saves) == len({(save.writer, save.seq) for save in saves}) == written, category


@pytest.mark.parametrize("where", ["bucket", "endpoint"])
def test_wrong_bucket_or_endpoint_is_one_clear_error_and_training_goes_on(bucket, tmp_path, caplog, where):
    if where == "bucket":
        url, options = "s3://no-such-bucket-rtsave/run", None
    else:
        url, options = f"s3://{bucket}/run", {"endpoint_url": "http://127.0.0.1:9"}  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="rtsave_async"):
        _, saving = train_cartpole(url, spool_dir=tmp_path / "spool", storage_options=options, exit_timeout=3)
    stats = saving.writer_stats
    assert stats["written"] > 0 and stats["failed"] == stats["dropped"] == 0  # training and the spool went on
    errors = upload_errors(caplog)
    assert len(errors) == 1 and url in errors[0], errors
    only_local = [record.getMessage() for record in caplog.records if "only in the local spool" in record.getMessage()]
    assert len(only_local) == 1 and f"rtsave sync {tmp_path / 'spool'} {url}" in only_local[0]
    assert_no_credentials([record.getMessage() for record in caplog.records] + [str(stats)])
    assert records_by_category(open_run(tmp_path / "spool"))  # nothing lost: all in the spool
    if where == "endpoint":  # a reader gets one line naming the URL too
        with pytest.raises(ConnectionError, match=f"^{url}: cannot be read") as raised:
            open_run(url, storage_options=options)
        assert_no_credentials([str(raised.value)])
    else:
        with pytest.raises(FileNotFoundError, match=url):
            open_run(url)


# ---------------------------------------------------------------------------- sync
WRITE_THEN_WAIT = """
import sys, time
from rtsave_async import SnapshotWriter
writer = SnapshotWriter(sys.argv[1], format="jsonl.zst", spool_dir=sys.argv[2], upload_interval=3600)
for i in range(300):
    writer.submit("episodes", {"i": i})
    if i == 150:
        writer.submit("custom", [{"note": "a json-format category too"}])
writer.flush()
print("flushed", flush=True)
time.sleep(600)
"""


def rtsave(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run([sys.executable, "-m", "rtsave_async", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_sigkill_of_the_writer_then_rtsave_sync_completes_the_upload(bucket, tmp_path):
    url, spool = f"s3://{bucket}/killed", tmp_path / "spool"
    child = python_child(WRITE_THEN_WAIT, url, str(spool))
    try:
        assert child.stdout.readline().strip() == "flushed", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    local = records_by_category(open_run(spool))
    assert len(local["episodes"]) == 300
    first = rtsave("sync", str(spool), url)
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and "matching sizes and checksums" in first.stdout
    assert records_by_category(open_run(url)) == local
    again = rtsave("sync", str(spool), url)
    assert again.returncode == 0, again.stderr
    assert "uploaded 0 file(s) and 0 segment part(s)" in again.stdout
    assert_no_credentials([first.stdout, first.stderr, again.stdout, again.stderr])


def test_rtsave_sync_refuses_a_folder_that_is_no_run(tmp_path):
    result = rtsave("sync", str(tmp_path), "s3://bucket/run")
    assert result.returncode == 2 and "not an rtsave run" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_loaded_from_s3_resumes_exactly_like_the_local_one(bucket, tmp_path):
    url = f"s3://{bucket}/ckpt"
    _, saving = train_cartpole(url, spool_dir=tmp_path / "spool")
    remote_path = open_run(url).checkpoints()[-1].path
    local_path = open_run(tmp_path / "spool").checkpoints()[-1].path
    parameters = []
    for path in (local_path, remote_path):
        env = make_vec_env("CartPole-v1", n_envs=2, seed=1)
        resumed = load_checkpoint(path, env)
        resumed.model.learn(128, reset_num_timesteps=False)
        parameters.append([p.detach().numpy().copy() for p in resumed.model.policy.parameters()])
        env.close()
    assert resumed.model.num_timesteps == 384
    for local, remote in zip(*parameters):
        np.testing.assert_array_equal(local, remote)


def test_cli_train_to_s3_then_test_from_s3(bucket, tmp_path):
    url = f"s3://{bucket}/cli/run"
    trained = rtsave("train", "--env", "CartPole-v1", "--total_timesteps", "256", "--num_envs", "1",
                     "--hyperparams", '{"n_steps": 128, "batch_size": 64, "n_epochs": 1}',
                     "--checkpoint_frequency", "256", "--save_dir", url, "--spool_dir", str(tmp_path / "spool"),
                     "--no_progress", "--format", "jsonl.zst")
    assert trained.returncode == 0, trained.stderr
    assert f"--model_path {url}/checkpoints/" in trained.stdout
    checkpoint = open_run(url).checkpoints()[-1].path
    tested = rtsave("test", "--model_path", checkpoint, "--env", "CartPole-v1", "--episodes", "1")
    assert tested.returncode == 0, tested.stderr
    assert "mean return" in tested.stdout
    resumed = rtsave("train", "--model_path", checkpoint, "--total_timesteps", "384", "--checkpoint_frequency", "128",
                     "--spool_dir", str(tmp_path / "spool"), "--no_progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "rtsave: resumed from" in resumed.stdout
    assert open_run(url).checkpoints()[-1].timestep >= 384  # written on into the same run URL (PPO ends a rollout)
    missing = rtsave("test", "--model_path", f"s3://{bucket}/cli/run/checkpoints/nothing.json", "--env", "CartPole-v1")
    assert missing.returncode == 2 and "no such checkpoint file" in missing.stderr


def test_rtsave_sync_while_the_writer_still_writes_is_safe_and_idempotent(bucket, tmp_path):
    import asyncio
    import threading

    from rtsave_async.remote.urls import parse_url
    from rtsave_async.upload.sync import sync_run

    url, spool = f"s3://{bucket}/busy", tmp_path / "spool"
    writer = SnapshotWriter(url, format="jsonl.zst", spool_dir=spool, upload_interval=0.2)

    def produce():
        for i in range(200):
            writer.submit("episodes", {"i": i})
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    reports = []
    while producer.is_alive():  # racing the writer's own uploader for the same open segment
        reports.append(asyncio.run(sync_run(spool, parse_url(url), timeout=60)))
    producer.join()
    writer.close()
    final = asyncio.run(sync_run(spool, parse_url(url), timeout=60))
    assert reports and all(report.complete and not report.mismatched for report in reports + [final])
    assert final.complete and not final.missing and final.stats["uploaded_files"] == 0
    remote = open_run(url)
    assert [r["i"] for r in remote.records("episodes")] == list(range(200))
    saves = remote.saves("episodes")
    assert len({(save.writer, save.seq) for save in saves}) == len(saves) == 200
    assert not any(".parts/" in key for key in FsspecRunStore(url).list("episodes"))


def test_reader_commands_and_the_dashboard_read_an_s3_run(bucket, tmp_path):
    import json

    import pandas as pd

    from rtsave_async.dashboard.data import RunData

    url = f"s3://{bucket}/readers/run"
    train_cartpole(url, spool_dir=tmp_path / "spool", format="jsonl.zst")
    expected = list(open_run(url).records("episodes"))
    assert expected

    inspected = rtsave("inspect", url, "--json")
    assert inspected.returncode == 0, inspected.stderr
    summary = json.loads(inspected.stdout)
    assert summary["status"]["state"] == "finished"

    listed = rtsave("inspect", f"s3://{bucket}/readers")
    assert listed.returncode == 0 and "run" in listed.stdout and "finished" in listed.stdout

    out = tmp_path / "episodes.csv"
    exported = rtsave("export", url, "--format", "csv", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(pd.read_csv(out)) == len(expected)

    data = RunData("run", open_run(url))
    assert data.update() == sum(len(list(open_run(url).records(category))) for category in open_run(url).categories())
    assert_no_credentials([inspected.stdout, inspected.stderr, listed.stdout, exported.stdout, exported.stderr])
