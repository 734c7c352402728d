"""Episode bookkeeping and the ``episodes`` records.

:class:`EpisodeTracker` is fed the ``dones``/``infos`` of every vectorized step
(a few comparisons; work is only done for environments whose episode just ended)
and, once per save, turns its counters plus the environments' optional detailed
state into one record per environment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from rtsave_async.collectors.values import plain_copy

#: Default number of most recent finished episodes in ``recent_success_rate``.
DEFAULT_SUCCESS_WINDOW = 100


class EpisodeTracker:
    """Counts episodes and successes per environment from the SB3 step ``infos``.

    SB3 conventions: an episode ends where ``dones[i]`` is true; ``infos[i]["episode"]``
    (added by ``Monitor``) holds its return ``"r"`` and length ``"l"``;
    ``infos[i]["is_success"]``, when present at the end of an episode, says whether it
    succeeded. Episodes without ``is_success`` count as episodes but not towards any
    success rate.

    :param num_envs: number of environments in the VecEnv
    :param success_window: how many of the most recent finished episodes (all
        environments together) ``recent_success_rate`` averages over; default 100
    """

    def __init__(self, num_envs: int, success_window: int = DEFAULT_SUCCESS_WINDOW):
        self.num_envs = num_envs
        self.episode_counts = [0] * num_envs
        self.success_counts = [0] * num_envs
        self._episodes_with_success_info = [0] * num_envs
        self._recent_successes: deque[bool] = deque(maxlen=success_window)
        self._finished_since_save: list[list[dict[str, Any]]] = [[] for _ in range(num_envs)]
        self._vec_steps = 0
        self._episode_start_step = [0] * num_envs

    def record_step(self, dones: np.ndarray, infos: Sequence[dict[str, Any]]) -> None:
        """Account for one ``VecEnv.step``: only envs whose episode ended cost anything."""
        self._vec_steps += 1
        if not dones.any():
            return
        for env_id in np.flatnonzero(dones).tolist():
            self._record_episode_end(env_id, infos[env_id])

    def _record_episode_end(self, env_id: int, info: dict[str, Any]) -> None:
        self.episode_counts[env_id] += 1
        is_success = info.get("is_success")
        if is_success is not None:
            is_success = bool(is_success)
            self._episodes_with_success_info[env_id] += 1
            self.success_counts[env_id] += is_success
            self._recent_successes.append(is_success)
        monitor_info = info.get("episode")
        if monitor_info is not None:
            episode_return, episode_length = float(monitor_info["r"]), int(monitor_info["l"])
        else:
            episode_return, episode_length = None, self.current_step(env_id)
        self._finished_since_save[env_id].append(
            {"return": episode_return, "length": episode_length, "is_success": is_success}
        )
        self._episode_start_step[env_id] = self._vec_steps

    def state_dict(self) -> dict[str, Any]:
        """The counters, as plain lists, for a checkpoint (see :meth:`load_state_dict`)."""
        return {
            "episode_counts": list(self.episode_counts),
            "success_counts": list(self.success_counts),
            "episodes_with_success_info": list(self._episodes_with_success_info),
            "recent_successes": list(self._recent_successes),
            "current_steps": [self.current_step(env_id) for env_id in range(self.num_envs)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue counting from a :meth:`state_dict` of a run with as many envs."""
        if len(state["episode_counts"]) != self.num_envs:
            raise ValueError(f"saved counters are for {len(state['episode_counts'])} envs, not {self.num_envs}")
        self.episode_counts = list(state["episode_counts"])
        self.success_counts = list(state["success_counts"])
        self._episodes_with_success_info = list(state["episodes_with_success_info"])
        self._recent_successes.clear()
        self._recent_successes.extend(state["recent_successes"])
        self._vec_steps = 0
        self._episode_start_step = [-steps for steps in state["current_steps"]]

    def current_step(self, env_id: int) -> int:
        """Steps env ``env_id`` has taken in its current episode (as seen by the tracker)."""
        return self._vec_steps - self._episode_start_step[env_id]

    def success_rate(self, env_id: int) -> float | None:
        """Successes / episodes that reported ``is_success`` for one env; None if none did."""
        known = self._episodes_with_success_info[env_id]
        return self.success_counts[env_id] / known if known else None

    def recent_success_rate(self) -> float | None:
        """Mean success over the last ``success_window`` episodes that reported it; None if none."""
        if not self._recent_successes:
            return None
        return sum(self._recent_successes) / len(self._recent_successes)

    def take_records(
        self,
        timestep: int,
        detailed_infos: Sequence[dict[str, Any] | None] | None = None,
        performance_metrics: Sequence[dict[str, Any] | None] | None = None,
        max_episode_steps: int | None = None,
        dt: float | None = None,
    ) -> list[dict[str, Any]]:
        """One ``episodes`` record per env, and start a new "finished since last save" period.

        :param timestep: ``model.num_timesteps`` at this save
        :param detailed_infos: per-env results of ``get_detailed_episode_info()`` (keys
            ``episode_info``, ``robot_state``, ``foot_contacts``), or None if unsupported
        :param performance_metrics: per-env results of ``get_performance_metrics()``
            (keys ``episode_progress``, ``stability_score``), or None if unsupported
        :param max_episode_steps: episode step limit (``TimeLimit``), used for the
            fallback ``time_remaining`` and ``episode_progress``; None if unknown
        :param dt: seconds of simulated time per env step, for ``time_remaining``
        """
        records = []
        for env_id in range(self.num_envs):
            detailed = detailed_infos[env_id] if detailed_infos is not None else None
            performance = performance_metrics[env_id] if performance_metrics is not None else None
            current_step = self.current_step(env_id)
            records.append(
                {
                    "timestep": timestep,
                    "env_id": env_id,
                    "episode_count": self.episode_counts[env_id],
                    "success_count": self.success_counts[env_id],
                    "success_rate": self.success_rate(env_id),
                    "detailed_info": _detailed_info(current_step, detailed, performance, max_episode_steps, dt),
                    "finished_episodes": self._finished_since_save[env_id],
                }
            )
        self._finished_since_save = [[] for _ in range(self.num_envs)]
        return records


def _detailed_info(
    current_step: int,
    detailed: dict[str, Any] | None,
    performance: dict[str, Any] | None,
    max_episode_steps: int | None,
    dt: float | None,
) -> dict[str, Any]:
    """Copies of the env's own detailed state where it gives one, the tracker's estimate otherwise."""
    if detailed is None:
        episode_info = robot_state = foot_contacts = None
    else:
        episode_info = plain_copy(detailed.get("episode_info"))
        robot_state = plain_copy(detailed.get("robot_state"))
        foot_contacts = plain_copy(detailed.get("foot_contacts"))
    if episode_info is None:
        steps_left = max_episode_steps - current_step if max_episode_steps is not None else None
        episode_info = {
            "current_step": current_step,
            "time_remaining": steps_left * dt if steps_left is not None and dt is not None else None,
        }
    if performance is None:
        performance = {
            "episode_progress": current_step / max_episode_steps if max_episode_steps else None,
            "stability_score": None,
        }
    else:
        performance = plain_copy(performance)
    return {
        "episode_info": episode_info,
        "robot_state": robot_state,
        "performance_metrics": performance,
        "foot_contacts": foot_contacts,
    }
