"""Runs used by the resume-exactness tests (each in its own process).

``python -c "import resume_harness; resume_harness.main()" MODE ALGO SAVE_DIR T OUT [VEC]``
with MODE ``full`` (train 2T), ``first`` (train T, checkpoint at T) or ``resume``
(load the newest checkpoint in SAVE_DIR and train to 2T), VEC ``dummy`` (default) or
``subproc``. Real-time records are saved every T/2 timesteps. Each run saves the
transitions it made after timestep T, its final parameters, optimizer states,
replay buffer, VecNormalize statistics and the callback's episode counters to OUT.
"""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.envs import BitFlippingEnv
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

from rtsave_async import RealTimeSavingCallback, iter_records, list_snapshot_files
from rtsave_async.checkpoints import load_checkpoint

N_ENVS = 2


class NoisyPointEnv(gym.Env):
    """A point pushed by the action with noise from the env's RNG; random episode ends.

    Implements the exact-resume protocol ``get_env_state``/``set_env_state``.
    """

    observation_space = gym.spaces.Box(-10.0, 10.0, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1, 1, 2)
        self.velocity = np.zeros(2)
        self.steps = 0
        return self._observation(), {}

    def step(self, action):
        self.velocity = 0.9 * self.velocity + 0.1 * np.asarray(action) + self.np_random.normal(0, 0.01, 2)
        self.position = np.clip(self.position + self.velocity, -5, 5)
        self.steps += 1
        reward = -float(np.linalg.norm(self.position))
        terminated = bool(np.linalg.norm(self.position) < 0.1)
        truncated = self.steps >= 20 + int(self.np_random.integers(0, 20))
        return self._observation(), reward, terminated, truncated, {"is_success": terminated}

    def _observation(self) -> np.ndarray:
        return np.concatenate([self.position, self.velocity]).astype(np.float32)

    def get_env_state(self) -> dict[str, Any]:
        return {"position": self.position.copy(), "velocity": self.velocity.copy(), "steps": self.steps,
                "rng": self.np_random.bit_generator.state}

    def set_env_state(self, state: dict[str, Any]) -> None:
        self.position, self.velocity, self.steps = state["position"].copy(), state["velocity"].copy(), state["steps"]
        self.np_random.bit_generator.state = state["rng"]


class OpaqueStateEnv(NoisyPointEnv):
    """A ``NoisyPointEnv`` whose ``get_env_state`` holds an object the pickle-free format cannot store."""

    def get_env_state(self) -> dict[str, Any]:
        return {**super().get_env_state(), "solver": object()}


class ResumableBitFlippingEnv(BitFlippingEnv):
    """SB3's goal env ``BitFlippingEnv`` (Dict observation, ``compute_reward``) with the exact-resume protocol."""

    def get_env_state(self) -> dict[str, Any]:
        return {"state": self.state.copy(), "current_step": self.current_step,
                "rng": self._obs_space.np_random.bit_generator.state}

    def set_env_state(self, state: dict[str, Any]) -> None:
        self.state, self.current_step = state["state"].copy(), state["current_step"]
        self._obs_space.np_random.bit_generator.state = state["rng"]


class TransitionRecorder(BaseCallback):
    """Keeps (obs, action, reward, done) of every step after ``after_timestep``."""

    def __init__(self, after_timestep: int):
        super().__init__()
        self.after_timestep = after_timestep
        self.transitions: list[tuple[np.ndarray, ...]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps > self.after_timestep:
            self.transitions.append(tuple(np.array(self.locals[key], copy=True)
                                          for key in ("new_obs", "actions", "rewards", "dones")))
        return True


def make_env(algorithm: str, vec: str = "dummy"):
    env = make_vec_env(NoisyPointEnv, n_envs=N_ENVS, seed=3, vec_env_cls=SubprocVecEnv if vec == "subproc" else None)
    return VecNormalize(env) if algorithm == "ppo" else env


def make_model(algorithm: str, env):
    if algorithm == "ppo":
        return PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=1, device="cpu")
    return SAC("MlpPolicy", env, buffer_size=2000, learning_starts=64, batch_size=32, seed=1, device="cpu",
               policy_kwargs={"net_arch": [32, 32]})


def main() -> None:
    mode, algorithm, save_dir, half, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    vec = sys.argv[6] if len(sys.argv) > 6 else "dummy"
    th.set_num_threads(1)
    saving = RealTimeSavingCallback(save_dir, save_frequency=half // 2, checkpoint_frequency=half,
                                    save_episode_data=True, save_hyperparameters=False)
    recorder = TransitionRecorder(after_timestep=half)
    callbacks = CallbackList([saving, recorder])
    if mode == "resume":
        newest = list_snapshot_files(save_dir, "checkpoints")[-1]
        resumed = load_checkpoint(newest, make_env(algorithm, vec))
        assert resumed.exact, "env states were not restored"
        model = resumed.model
        saving.restore_state(resumed.callback_state)
        model.learn(2 * half - model.num_timesteps, callback=callbacks, reset_num_timesteps=False)
    else:
        model = make_model(algorithm, make_env(algorithm, vec))
        model.learn(2 * half if mode == "full" else half, callback=callbacks)
    result = {
        "num_timesteps": model.num_timesteps,
        "transitions": recorder.transitions,
        "policy": model.policy.state_dict(),
        "optimizers": {name: state for name, state in model.get_parameters().items() if "optimizer" in name},
        "episode_counts": saving.episode_counts(),
        # SB3's view of the episodes: the recent ones behind rollout/ep_rew_mean, and Monitor's totals.
        "recent_episodes": [(info["r"], info["l"]) for info in model.ep_info_buffer],
        "monitor_returns": model.get_env().env_method("get_episode_rewards"),
        "monitor_lengths": model.get_env().env_method("get_episode_lengths"),
    }
    if algorithm == "sac":
        buffer = model.replay_buffer
        result["replay_buffer"] = {"pos": buffer.pos, "full": buffer.full, "observations": buffer.observations,
                                   "actions": buffer.actions, "rewards": buffer.rewards}
    else:
        vec_normalize = model.get_vec_normalize_env()
        result["vec_normalize"] = {"mean": vec_normalize.obs_rms.mean, "var": vec_normalize.obs_rms.var,
                                   "ret_var": vec_normalize.ret_rms.var, "count": vec_normalize.obs_rms.count}
    th.save(result, out)
    model.get_env().close()


def finished_episodes_after(save_dir: str, timestep: int) -> list[list[dict[str, Any]]]:
    """Per env, the episodes the ``episodes`` records in ``save_dir`` list after ``timestep``."""
    episodes: list[list[dict[str, Any]]] = [[] for _ in range(N_ENVS)]
    for record in iter_records(save_dir, "episodes"):
        if record["timestep"] > timestep:
            episodes[record["env_id"]].extend(record["finished_episodes"])
    return episodes
