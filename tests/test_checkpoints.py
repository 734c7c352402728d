"""Checkpoints: exact resume, crash safety, retention, clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env

from conftest import PROJECT_ROOT, python_child
from resume_harness import finished_episodes_after
from rtsave_async import RealTimeSavingCallback, list_snapshot_files
from rtsave_async.checkpoints import CheckpointError, find_checkpoint, load_checkpoint, prune_checkpoints
from rtsave_async.checkpoints.format import decode_replay_buffer
from rtsave_async.checkpoints.capture import copy_replay_buffer
from rtsave_async.sinks import LocalSink

HARNESS = "import sys; sys.path.insert(0, {tests!r}); import resume_harness; resume_harness.main()".format(
    tests=str(PROJECT_ROOT / "tests"))


def run_harness(*args: str) -> None:
    child = python_child(HARNESS, *args)
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == 0, stderr


def assert_same(left, right, where: str = "") -> None:
    if isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_same(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(left, th.Tensor):
        assert th.equal(left, right), where
    elif isinstance(left, np.ndarray):
        np.testing.assert_array_equal(left, right, err_msg=where)
    else:
        assert left == right, where


@pytest.mark.parametrize("algorithm, half", [("ppo", 256), ("sac", 300)])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path, algorithm: str, half: int) -> None:
    run_harness("full", algorithm, str(tmp_path / "full"), str(half), str(tmp_path / "full.pt"))
    run_harness("first", algorithm, str(tmp_path / "split"), str(half), str(tmp_path / "first.pt"))
    run_harness("resume", algorithm, str(tmp_path / "split"), str(half), str(tmp_path / "resumed.pt"))
    full = th.load(tmp_path / "full.pt", weights_only=False)
    resumed = th.load(tmp_path / "resumed.pt", weights_only=False)
    assert full["num_timesteps"] == resumed["num_timesteps"] == 2 * half
    assert len(full["transitions"]) == len(resumed["transitions"]) > 0
    assert_same(full, resumed)  # also SB3's recent episodes and the Monitors' totals
    assert finished_episodes_after(str(tmp_path / "split"), half) == finished_episodes_after(str(tmp_path / "full"), half)
    # The resumed run's real-time records went on in the same folder, nothing overwritten.
    metrics = list_snapshot_files(tmp_path / "split", "learning_metrics")
    assert len({path.name for path in metrics}) == len(metrics) >= 2


def train_with_checkpoints(save_dir: Path, algorithm=PPO, steps: int = 512, **saver_options) -> RealTimeSavingCallback:
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    options = {"n_steps": 64, "batch_size": 64, "n_epochs": 1} if algorithm is PPO else {
        "buffer_size": 5000, "learning_starts": 50, "batch_size": 32, "policy_kwargs": {"net_arch": [16]}}
    model = algorithm("MlpPolicy", env, seed=0, device="cpu", **options)
    callback = RealTimeSavingCallback(save_dir, save_frequency=10_000, checkpoint_frequency=128,
                                      save_hyperparameters=False, checkpoint_options=saver_options)
    model.learn(steps, callback=callback)
    return callback


def test_checkpoint_metadata_lists_complete_files_and_loads_with_plain_sb3(tmp_path: Path) -> None:
    train_with_checkpoints(tmp_path, SAC, steps=300)
    json_path = list_snapshot_files(tmp_path, "checkpoints")[-1]
    metadata = json.loads(json_path.read_bytes())  # one object, as our users read it
    assert metadata["algorithm"] == "SAC" and metadata["timestep"] == 300  # the final one, at training end
    assert metadata["recovery_info"]["can_resume"] is True
    # Not started by the rtsave command line, nor with a --model_path flag: no command is guessed.
    assert metadata["recovery_info"]["resume_command"] is None
    assert metadata["model_path"] in metadata["recovery_info"]["resume_instructions"]
    assert set(metadata["files"]) == {"zip", "state.npz", "replay_buffer.npz.zst"}
    for entry in metadata["files"].values():
        assert Path(entry["path"]).stat().st_size == entry["bytes"]
    SAC.load(metadata["model_path"])  # SB3 reads our zip unchanged
    replay = metadata["contents"]["replay_buffer"]
    assert replay["transitions"] == 300 and metadata["files"]["replay_buffer.npz.zst"]["bytes"] < replay["raw_bytes"]


def test_compact_replay_buffer_restores_identically(tmp_path: Path) -> None:
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = SAC("MlpPolicy", env, buffer_size=100, learning_starts=500, seed=0, device="cpu")
    model.learn(260)  # wraps around: full, pos moved on
    from rtsave_async.checkpoints.format import encode_replay_buffer, restore_replay_buffer

    for source in (model.replay_buffer,):
        copy = decode_replay_buffer(encode_replay_buffer(copy_replay_buffer(source)))
        fresh = SAC("MlpPolicy", env, buffer_size=100, seed=1, device="cpu").replay_buffer
        restore_replay_buffer(fresh, copy)
        assert (fresh.pos, fresh.full) == (source.pos, source.full) == (30, True)
        for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            np.testing.assert_array_equal(getattr(fresh, name), getattr(source, name))


def test_retention_keeps_exactly_the_newest_n(tmp_path: Path) -> None:
    callback = train_with_checkpoints(tmp_path, steps=1024, keep_last=3, if_busy="wait")
    jsons = list_snapshot_files(tmp_path, "checkpoints")
    assert len(jsons) == 3
    assert [json.loads(path.read_bytes())["timestep"] for path in jsons] == [768, 896, 1024]
    stems = {path.name.split(".")[0] for path in (tmp_path / "checkpoints").iterdir()}
    assert stems == {path.name.split(".")[0] for path in jsons}  # attachments went with their JSON
    assert len(callback.checkpoint_saver.submitted_timesteps) == 8


def test_retention_keep_every_and_orphans(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for sequence in range(1, 8):
        stem = f"checkpoint_20250101_120000_{sequence:08d}"
        (folder / f"{stem}.zip").write_bytes(b"z")
        if sequence != 4:  # 4 was interrupted before its JSON: an orphan
            (folder / f"{stem}.json").write_text("[]")
    (folder / "checkpoint_20250101_120000_00000008.zip").write_bytes(b"in flight")  # newer than the newest JSON
    asyncio.run(prune_checkpoints(LocalSink(tmp_path), keep_last=2, keep_every=3))
    left = sorted(path.name for path in folder.iterdir())
    assert left == sorted(
        [f"checkpoint_20250101_120000_{n:08d}.{ext}" for n in (3, 6, 7) for ext in ("json", "zip")]
        + ["checkpoint_20250101_120000_00000008.zip"])


def test_wrong_algorithm_and_corrupt_files_give_clear_errors(tmp_path: Path) -> None:
    train_with_checkpoints(tmp_path, steps=256)
    json_path = list_snapshot_files(tmp_path, "checkpoints")[-1]
    info = find_checkpoint(json_path)
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    with pytest.raises(CheckpointError, match=r"saved by PPO, cannot be resumed as SAC") as error:
        load_checkpoint(info.model_path, env, algorithm="SAC")
    assert str(info.model_path) in str(error.value)
    data = bytearray(info.model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    info.model_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 differs") as error:
        load_checkpoint(json_path, env)
    assert str(info.model_path) in str(error.value)
    bare = tmp_path / "bare.zip"
    bare.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=r"bare.zip: cannot be loaded as a PPO model"):
        load_checkpoint(bare, env, algorithm="PPO")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.zip", env)


SIGKILL_TRAINER = """
    import sys
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env
    from rtsave_async import RealTimeSavingCallback
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    model = SAC("MlpPolicy", env, buffer_size=200_000, learning_starts=10**9, seed=0, device="cpu")
    callback = RealTimeSavingCallback(sys.argv[1], save_frequency=10**9, checkpoint_frequency=500,
                                      save_hyperparameters=False)
    model.learn(10**9, callback=callback)
"""


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_during_checkpoints_leaves_only_loadable_resumable_ones(tmp_path: Path, trial: int) -> None:
    child = python_child(SIGKILL_TRAINER, str(tmp_path))
    folder = tmp_path / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(folder.glob("*.json")) if folder.exists() else []) < 2 + trial:
        time.sleep(0.02)
    time.sleep(0.05 * trial)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    listed = list_snapshot_files(tmp_path, "checkpoints")
    assert len(listed) >= 2, child.stderr.read()
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    for json_path in listed:
        resumed = load_checkpoint(json_path, env)
        assert resumed.model.num_timesteps == json.loads(json_path.read_bytes())["timestep"]


def test_leftovers_of_an_interrupted_checkpoint_go_with_the_next_one(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    orphan = folder / "checkpoint_20250101_120000_00000001.zip"  # its JSON was never written
    orphan.write_bytes(b"half")
    train_with_checkpoints(tmp_path, steps=256)  # keep_last=None: every complete checkpoint stays
    assert not orphan.exists()
    assert [json.loads(path.read_bytes())["timestep"] for path in list_snapshot_files(tmp_path, "checkpoints")] == [128, 256]


def test_an_evicted_or_refused_checkpoint_does_not_stop_later_ones(tmp_path: Path) -> None:
    from support.sinks import GatedSink

    from rtsave_async import SnapshotWriter
    from rtsave_async.checkpoints import CheckpointSaver

    model = PPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=0), n_steps=64, batch_size=64, device="cpu")
    saver = CheckpointSaver()
    gate = GatedSink(LocalSink(tmp_path))
    writer = SnapshotWriter(tmp_path, queue_size=1, policy="drop_oldest", sink=gate)
    writer.submit("episodes", {"busy": True})
    assert gate.entered.wait(10)
    assert saver.checkpoint(writer, model, {}, 1000)  # queued behind the held write ...
    writer.submit("episodes", {"evicts": "the checkpoint"})
    assert saver.wait_idle(0) and saver.failed == 1  # ... evicted: the saver is free again

    def refuse(*args, **kwargs):
        raise RuntimeError("writer closed")

    writer.submit, real_submit = refuse, writer.submit
    with pytest.raises(RuntimeError):
        saver.checkpoint(writer, model, {}, 1000)
    assert saver.wait_idle(0)
    writer.submit = real_submit
    gate.open()
    assert saver.checkpoint(writer, model, {}, 1000)
    assert writer.flush(timeout=60) is False  # the eviction is reported once
    writer.close()
    assert len(saver.written) == 1 and saver.written[0].exists()
