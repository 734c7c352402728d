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


class StrRaises:
    """An object whose ``str()`` and ``repr()`` raise, as some users' config objects do."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")

    __repr__ = __str__


def _cyclic_list() -> list[Any]:
    values: list[Any] = [0.5]
    values.append(values)
    return values


def _deep_dict(depth: int = 3000) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["child"] = {}
        node = node["child"]
    return root


def _meta_tensor() -> Any:
    import torch

    return torch.empty(3, device="meta")


def _two_element_tensor() -> Any:
    import torch

    return torch.tensor([0.5, 0.25])


def _unpicklable() -> Any:
    import threading

    return threading.Lock()


#: Odd value kind -> (where the env puts it, a factory of the value).
#: ``reward`` / ``cost``: a term of ``info["reward_components"]`` / ``info["cost_components"]``;
#: ``rewards``: ``info["reward_components"]`` itself; ``detailed``: ``robot_state`` of
#: ``get_detailed_episode_info()``; ``raises``: that method raises.
ODD_VALUES: dict[str, tuple[str, Any]] = {
    "none_reward": ("reward", lambda: None),
    "string_reward": ("reward", lambda: "trot"),
    "per_foot_vector": ("reward", lambda: np.array([0.1, 0.2, 0.3, 0.4])),
    "ndarray_components": ("rewards", lambda: np.array([1.0, 0.5])),
    "list_components": ("rewards", lambda: [1.0, 0.5]),
    "two_element_tensor_cost": ("cost", _two_element_tensor),
    "meta_tensor": ("detailed", _meta_tensor),
    "str_raises": ("detailed", StrRaises),
    "cyclic_list": ("detailed", _cyclic_list),
    "deep_dict": ("detailed", _deep_dict),
    "detailed_info_raises": ("raises", lambda: None),
    "unpicklable": ("detailed", _unpicklable),
}


class OddValueEnv(gym.Env):
    """A CartPole-sized env that reports one kind of odd value (:data:`ODD_VALUES`) every step.

    Without a saving callback it trains as any env does: SB3 never reads these values.

    :param kind: a key of :data:`ODD_VALUES`
    :param episode_length: steps per episode
    """

    def __init__(self, kind: str, episode_length: int = 20):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.where, self.make_value = ODD_VALUES[kind]
        self.episode_length = episode_length
        self._step = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._step = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self._step += 1
        info: dict[str, Any] = {"reward_components": {"alive": 1.0}, "cost_components": {"energy": 0.5}}
        if self.where == "reward":
            info["reward_components"]["odd"] = self.make_value()
        elif self.where == "cost":
            info["cost_components"]["odd"] = self.make_value()
        elif self.where == "rewards":
            info["reward_components"] = self.make_value()
        observation = np.full(4, self._step / self.episode_length, np.float32)
        return observation, 1.0, False, self._step >= self.episode_length, info

    def get_detailed_episode_info(self) -> dict[str, Any]:
        if self.where == "raises":
            raise RuntimeError("the env's own bookkeeping failed")
        robot_state = self.make_value() if self.where == "detailed" else {"height": 0.3}
        return {"episode_info": {"current_step": self._step}, "robot_state": robot_state}
