"""Every SB3 replay buffer class round-trips through a checkpoint exactly; SAC with HER resumes."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv
from stable_baselines3.her import HerReplayBuffer

from resume_harness import ResumableBitFlippingEnv
from rtsave_async import RealTimeSavingCallback, list_snapshot_files
from rtsave_async.checkpoints import load_checkpoint
from rtsave_async.checkpoints.format import decode_replay_buffer, encode_replay_buffer, restore_replay_buffer
from rtsave_async.checkpoints.capture import copy_replay_buffer
from test_checkpoints import assert_same

N_BITS = 4


def goal_env(env_class: type = ResumableBitFlippingEnv, n_envs: int = 2):
    make_env = functools.partial(env_class, n_bits=N_BITS, continuous=True, max_steps=6)
    return make_vec_env(make_env, n_envs=n_envs, seed=0)


def her_kwargs(copy_info_dict: bool = True) -> dict:
    return {"replay_buffer_class": HerReplayBuffer,
            "replay_buffer_kwargs": {"n_sampled_goal": 2, "goal_selection_strategy": "future",
                                     "copy_info_dict": copy_info_dict}}


def assert_same_buffer(restored, source) -> None:
    """Every array the buffer holds (observation dicts, HER episode bounds, stored infos) and pos/full."""
    assert (restored.pos, restored.full) == (source.pos, source.full)
    for name, value in vars(source).items():
        if isinstance(value, np.ndarray) and value.dtype == object:
            assert_same(getattr(restored, name).tolist(), value.tolist(), name)
        elif isinstance(value, (np.ndarray, dict)):
            assert_same(getattr(restored, name), value, name)


BUFFERS = {
    "ReplayBuffer": ("Pendulum-v1", {}),
    "ReplayBuffer, optimize_memory_usage": ("Pendulum-v1", {
        "optimize_memory_usage": True, "replay_buffer_kwargs": {"handle_timeout_termination": False}}),
    "NStepReplayBuffer": ("Pendulum-v1", {"n_steps": 3}),
    "DictReplayBuffer": ("goal", {}),
    "HerReplayBuffer": ("goal", her_kwargs()),
    "HerReplayBuffer, no infos": ("goal", her_kwargs(copy_info_dict=False)),
}


@pytest.mark.parametrize("steps", [75, 130])  # part-filled (mid-episode) and wrapped around
@pytest.mark.parametrize("kind", BUFFERS)
def test_every_replay_buffer_class_round_trips_exactly(kind: str, steps: int) -> None:
    env_id, options = BUFFERS[kind]
    env = goal_env() if env_id == "goal" else make_vec_env(env_id, n_envs=2, seed=0)
    policy = "MultiInputPolicy" if env_id == "goal" else "MlpPolicy"
    model = SAC(policy, env, buffer_size=100, learning_starts=1000, seed=0, device="cpu", **options)
    model.learn(steps)
    source = model.replay_buffer
    assert type(source).__name__ == kind.split(",")[0]
    fresh = SAC(policy, env, buffer_size=100, seed=1, device="cpu", **options).replay_buffer
    restore_replay_buffer(fresh, decode_replay_buffer(encode_replay_buffer(copy_replay_buffer(source))))
    assert_same_buffer(fresh, source)
    if isinstance(source, HerReplayBuffer):
        assert source.ep_length.any() and (source._current_ep_start != source.pos).any()  # an episode is open


def train_her(save_dir: Path, env, steps: int) -> SAC:
    model = SAC("MultiInputPolicy", env, buffer_size=500, learning_starts=40, batch_size=16, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]}, **her_kwargs())
    model.learn(steps, callback=RealTimeSavingCallback(save_dir, save_frequency=10_000, checkpoint_frequency=50,
                                                       save_hyperparameters=False))
    return model


def test_sac_with_her_resumes_mid_episode_with_its_buffer_exactly(tmp_path: Path) -> None:
    model = train_her(tmp_path, goal_env(), 101)  # the final checkpoint holds the buffer as training left it
    resumed = load_checkpoint(list_snapshot_files(tmp_path, "checkpoints")[-1], goal_env())
    assert resumed.exact and resumed.model.num_timesteps == model.num_timesteps
    assert_same_buffer(resumed.model.replay_buffer, model.replay_buffer)
    resumed.model.learn(60, reset_num_timesteps=False)  # samples, including virtual goals
    assert resumed.model.replay_buffer.pos == (model.replay_buffer.pos + 60 // 2)


def test_sac_with_her_on_envs_that_are_reset_at_resume_closes_the_open_episodes(tmp_path: Path) -> None:
    model = train_her(tmp_path, goal_env(BitFlippingEnv), 101)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3's advice about truncate_last_trajectory does not apply here
        resumed = load_checkpoint(list_snapshot_files(tmp_path, "checkpoints")[-1], goal_env(BitFlippingEnv))
    assert not resumed.exact
    buffer = resumed.model.replay_buffer
    assert (model.replay_buffer._current_ep_start != model.replay_buffer.pos).any()
    assert (buffer._current_ep_start == buffer.pos).all()  # the episodes cut by the reset end at the checkpoint
    resumed.model.learn(60, reset_num_timesteps=False)
