"""What a checkpoint restores in each situation, and what it says about resuming."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from cli_support import child_env, newest_checkpoint_record
from rtsave_async import RealTimeSavingCallback, list_snapshot_files
from rtsave_async.checkpoints import load_checkpoint
from rtsave_async.checkpoints.resume import regroup_replay_buffer
from rtsave_async.checkpoints.format import ReplayBufferCopy


def wrapped_buffer(rows: int, envs: int, pos: int) -> ReplayBufferCopy:
    """A full buffer whose slot ``pos`` is the oldest; each value is its collection index (time, then env)."""
    times = (np.arange(rows) - pos) % rows
    values = (times[:, None] * envs + np.arange(envs)[None, :]).astype(np.float32)
    return ReplayBufferCopy({"actions": values[..., None], "rewards": values.copy()}, pos, True, rows)


def test_regrouping_keeps_the_newest_transitions_in_collection_order() -> None:
    regrouped = regroup_replay_buffer(wrapped_buffer(rows=5, envs=2, pos=2), n_envs=3, buffer_size=3)
    assert regrouped.arrays["rewards"].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]  # the oldest one did not fit
    assert regrouped.arrays["actions"].shape == (3, 3, 1)
    assert (regrouped.pos, regrouped.full, regrouped.buffer_size) == (0, True, 3)

    roomy = regroup_replay_buffer(wrapped_buffer(rows=5, envs=2, pos=2), n_envs=1, buffer_size=100)
    assert roomy.arrays["rewards"][:, 0].tolist() == list(range(10))
    assert (roomy.pos, roomy.full) == (10, False)


def train_sac_with_checkpoint(save_dir: Path) -> None:
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = SAC("MlpPolicy", env, buffer_size=1000, learning_starts=50, batch_size=32, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})
    model.learn(200, callback=RealTimeSavingCallback(save_dir, save_frequency=10_000, checkpoint_frequency=100,
                                                     save_hyperparameters=False))


def test_loading_for_prediction_takes_the_policy_and_statistics_only(tmp_path: Path) -> None:
    train_sac_with_checkpoint(tmp_path)
    newest = list_snapshot_files(tmp_path, "checkpoints")[-1]
    one_env = make_vec_env("Pendulum-v1", n_envs=1, seed=1)
    resumed = load_checkpoint(newest, one_env, for_prediction=True, device="cpu")
    assert resumed.restored == ["policy parameters at timestep 200", "VecNormalize statistics"]
    assert resumed.not_restored == []
    assert resumed.model.replay_buffer.buffer_size == 1 and resumed.model.replay_buffer.pos == 0
    vec_normalize = resumed.model.get_vec_normalize_env()
    assert not vec_normalize.training and not vec_normalize.norm_reward

    training = load_checkpoint(newest, make_vec_env("Pendulum-v1", n_envs=1, seed=1), device="cpu")
    assert "replay buffer (200 of 200 transitions, regrouped from 2 envs x 500 slots to 1 x 1000)" in training.restored
    assert training.model.replay_buffer.pos == 200
    assert "env states (the envs do not implement get_env_state: they start from a reset)" in training.not_restored


USERS_SCRIPT = """
    import argparse
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from rtsave_async import RealTimeSavingCallback

    parser = argparse.ArgumentParser()
    parser.add_argument("--save_dir")
    parser.add_argument("--model_path", default=None)
    args = parser.parse_args()
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), n_steps=64, batch_size=64, n_epochs=1,
                device="cpu")
    model.learn(128, callback=RealTimeSavingCallback(args.save_dir, save_frequency=10_000, checkpoint_frequency=64,
                                                     save_hyperparameters=False))
"""


def test_a_run_not_started_by_rtsave_records_its_own_command(tmp_path: Path) -> None:
    (tmp_path / "train_mine.py").write_text(textwrap.dedent(USERS_SCRIPT))
    run = subprocess.run([sys.executable, "train_mine.py", "--save_dir", "data", "--model_path", "none"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=child_env())
    assert run.returncode == 0, run.stderr
    metadata = newest_checkpoint_record(tmp_path / "data")
    recovery = metadata["recovery_info"]
    assert Path(metadata["model_path"]).is_absolute()
    assert recovery["resume_command"] == shlex.join(
        [sys.executable, str(tmp_path / "train_mine.py"), "--save_dir", "data", "--model_path", metadata["model_path"]])
    instructions = recovery["resume_instructions"]
    assert instructions.startswith("Resuming restores the model parameters and optimizer states "
                                   "(num_timesteps continues from 128); the RNG states")
    assert "The envs start from a reset (they do not implement get_env_state)" in instructions
    assert f"load_checkpoint({metadata['model_path']!r}, env)" in instructions
    assert "replay buffer" not in instructions and "VecNormalize" not in instructions
