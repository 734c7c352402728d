"""Test envs that expose what our users' own Go1 trainer env exposes, under its names.

Their env (the trainer the users' description comes from) differs from our protocol:
``_rand_power`` instead of ``rand_power``, ``curriculum_factor`` instead of
``curriculum_progress``, success through ``_success_count``, ``info["success_rate"]``
at reset and ``info["bipedal_success"]`` (no ``is_success``), contact data in
``info["contact_info"]``, reward terms as flat info keys, a detailed-info dict with
its own keys, and no ``ctrl_type``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

LEGS = ("FR", "FL", "RR", "RL")

#: The keys of the users' ``get_detailed_episode_info()``.
DETAILED_INFO_KEYS = ("contact_info", "stability_metrics", "reward_info", "env_config", "action_info", "simulation_time")


class UserTrainerEnv(gym.Env):
    """Fixed-length episodes; every other episode succeeds (the first one does).

    :param episode_length: steps per episode
    :param reports_bipedal_success: put ``bipedal_success`` in the final step's info;
        without it the only success signals are ``_success_count`` and the reset
        info's ``success_rate``
    """

    def __init__(self, episode_length: int = 8, reports_bipedal_success: bool = True):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode_length = episode_length
        self.reports_bipedal_success = reports_bipedal_success
        self.dt = 0.02
        self._rand_power = 0.4
        self.curriculum_factor = 0.0
        self._success_count = 0
        self._episodes = 0
        self._step = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._step = 0
        self.curriculum_factor = min(1.0, self._episodes / 10)
        return np.zeros(2, np.float32), {"success_rate": self._success_count / max(1, self._episodes)}

    def step(self, action):
        self._step += 1
        truncated = self._step >= self.episode_length
        info: dict[str, Any] = {
            "reward_tracking": 1.0,
            "reward_air_time": 0.25 * (self._step % 2),
            "cost_torque": 0.5,
            "contact_info": {leg: bool((self._step + index) % 2) for index, leg in enumerate(LEGS)},
        }
        if truncated:
            succeeded = self._episodes % 2 == 0
            self._episodes += 1
            self._success_count += succeeded
            if self.reports_bipedal_success:
                info["bipedal_success"] = succeeded
        return np.zeros(2, np.float32), 1.0, False, truncated, info

    def get_detailed_episode_info(self) -> dict[str, Any]:
        return {
            "contact_info": {leg: True for leg in LEGS},
            "stability_metrics": {"roll": 0.0, "pitch": 0.01},
            "reward_info": {"last_reward": 1.0},
            "env_config": {"biped": True, "rand_power": self._rand_power},
            "action_info": {"last_action": [0.0]},
            "simulation_time": self._step * self.dt,
        }


class OwnNamesEnv(gym.Env):
    """A plain env keeping its randomization strength under a name of its own, ``noise_level``."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.noise_level = 0.7

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, False, False, {}
