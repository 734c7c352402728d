"""Episode bookkeeping and the ``episodes`` records.

:class:`EpisodeTracker` is fed the ``dones``/``infos`` of every vectorized step
(a few comparisons; work is only done for environments whose episode just ended)
and, once per save, turns its counters plus the environments' optional detailed
state into one record per environment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rtsave_async.collectors.values import REAL_NUMBER_TYPES, ValueProblems, plain_copy

#: Default number of most recent finished episodes in ``recent_success_rate``.
DEFAULT_SUCCESS_WINDOW = 100

#: Info keys that say whether a finished episode succeeded, tried in order.
DEFAULT_SUCCESS_KEYS = ("is_success", "bipedal_success")

#: Info key of a success rate the env computes itself (step or reset info).
ENV_SUCCESS_RATE_KEY = "success_rate"

#: Info key of contact data some envs report every step (``foot_contacts`` when the env's
#: detailed info has none).
CONTACT_INFO_KEY = "contact_info"


class EpisodeTracker:
    """Counts episodes and successes per environment from the SB3 step ``infos``.

    SB3 conventions: an episode ends where ``dones[i]`` is true; ``infos[i]["episode"]``
    (added by ``Monitor``) holds its return ``"r"`` and length ``"l"``; the first of
    ``success_keys`` (default ``is_success``, then ``bipedal_success``) present at the
    end of an episode says whether it succeeded. Episodes without one count as episodes
    but not towards our success rates; for those envs a ``success_rate`` the env reports
    itself (in the final step's info or in the reset info that follows) is used instead.

    :param num_envs: number of environments in the VecEnv
    :param success_window: how many of the most recent finished episodes (all
        environments together) ``recent_success_rate`` averages over; default 100
    :param success_keys: info keys read as the success signal, in order
    :param problems: where detailed-info values that could not be copied are counted;
        default a fresh one
    """

    def __init__(
        self,
        num_envs: int,
        success_window: int = DEFAULT_SUCCESS_WINDOW,
        success_keys: Sequence[str] = DEFAULT_SUCCESS_KEYS,
        problems: ValueProblems | None = None,
    ):
        self.num_envs = num_envs
        self.problems = problems if problems is not None else ValueProblems()
        self.success_keys = tuple(success_keys)
        self._env_success_rates: list[float | None] = [None] * num_envs
        self.episode_counts = [0] * num_envs
        self.success_counts = [0] * num_envs
        self._episodes_with_success_info = [0] * num_envs
        self._recent_successes: deque[bool] = deque(maxlen=success_window)
        self._finished_since_save: list[list[dict[str, Any]]] = [[] for _ in range(num_envs)]
        self._vec_steps = 0
        self._episode_start_step = [0] * num_envs

    def record_step(
        self,
        dones: np.ndarray,
        infos: Sequence[dict[str, Any]],
        reset_infos: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Account for one ``VecEnv.step``: only envs whose episode ended cost anything.

        :param reset_infos: the VecEnv's ``reset_infos`` (the infos of the automatic
            resets of this step), if it keeps them
        """
        self._vec_steps += 1
        flags = dones.tolist()  # plain values: any() of a few envs is several times faster than numpy's
        if not any(flags):
            return
        for env_id, done in enumerate(flags):
            if done:
                reset_info = reset_infos[env_id] if reset_infos is not None and env_id < len(reset_infos) else None
                self._record_episode_end(env_id, infos[env_id], reset_info)

    def _record_episode_end(self, env_id: int, info: dict[str, Any], reset_info: dict[str, Any] | None) -> None:
        self.episode_counts[env_id] += 1
        is_success = next((info[key] for key in self.success_keys if info.get(key) is not None), None)
        if is_success is not None:
            is_success = self._truth_value(is_success)
        if is_success is None:
            reported = info.get(ENV_SUCCESS_RATE_KEY, (reset_info or {}).get(ENV_SUCCESS_RATE_KEY))
            if isinstance(reported, REAL_NUMBER_TYPES):
                self._env_success_rates[env_id] = float(reported)
        else:
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

    def _truth_value(self, signal: Any) -> bool | None:
        """``bool(signal)``, or None (no success signal; counted) for one without a truth value (an array)."""
        try:
            return bool(signal)
        except Exception as exc:
            self.problems.report("success signal not a truth value",
                                 f"a success signal {type(signal).__name__} has no truth value ({exc!r:.200}); "
                                 f"the episode counts without one")
            return None

    def state_dict(self) -> dict[str, Any]:
        """The counters, as plain lists, for a checkpoint (see :meth:`load_state_dict`)."""
        return {
            "episode_counts": list(self.episode_counts),
            "success_counts": list(self.success_counts),
            "episodes_with_success_info": list(self._episodes_with_success_info),
            "recent_successes": list(self._recent_successes),
            "current_steps": [self.current_step(env_id) for env_id in range(self.num_envs)],
            "env_success_rates": list(self._env_success_rates),
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
        self._env_success_rates = list(state.get("env_success_rates") or [None] * self.num_envs)
        self._vec_steps = 0
        self._episode_start_step = [-steps for steps in state["current_steps"]]

    def restart_episodes(self) -> None:
        """Every env starts a new episode now (the envs were reset); counts are kept."""
        self._episode_start_step = [self._vec_steps] * self.num_envs

    def current_step(self, env_id: int) -> int:
        """Steps env ``env_id`` has taken in its current episode (as seen by the tracker)."""
        return self._vec_steps - self._episode_start_step[env_id]

    @property
    def success_signal_seen(self) -> bool:
        """True once any finished episode gave a success signal (ours or the env's own rate)."""
        return any(self._episodes_with_success_info) or any(rate is not None for rate in self._env_success_rates)

    def success_rate(self, env_id: int) -> float | None:
        """Successes / episodes that gave a success signal for one env, else the rate the
        env reported itself; None if neither is known."""
        known = self._episodes_with_success_info[env_id]
        return self.success_counts[env_id] / known if known else self._env_success_rates[env_id]

    def recent_success_rate(self) -> float | None:
        """Mean success over the last ``success_window`` episodes with a success signal,
        else the mean of the rates the envs reported; None if neither is known."""
        if self._recent_successes:
            return sum(self._recent_successes) / len(self._recent_successes)
        reported = [rate for rate in self._env_success_rates if rate is not None]
        return sum(reported) / len(reported) if reported else None

    def take_records(
        self,
        timestep: int,
        detailed_infos: Sequence[dict[str, Any] | None] | None = None,
        performance_metrics: Sequence[dict[str, Any] | None] | None = None,
        max_episode_steps: int | None = None,
        dt: float | None = None,
        env_success_counts: Sequence[int] | None = None,
        step_infos: Sequence[dict[str, Any]] | None = None,
        copied: bool = False,
    ) -> list[dict[str, Any]]:
        """One ``episodes`` record per env, and start a new "finished since last save" period.

        :param timestep: ``model.num_timesteps`` at this save
        :param detailed_infos: per-env results of ``get_detailed_episode_info()`` (keys
            ``episode_info``, ``robot_state``, ``foot_contacts``; other keys are kept), or
            None if unsupported
        :param performance_metrics: per-env results of ``get_performance_metrics()``
            (keys ``episode_progress``, ``stability_score``, ...), or None if unsupported
        :param max_episode_steps: episode step limit (``TimeLimit``), used for the
            fallback ``time_remaining`` and ``episode_progress``; None if unknown
        :param dt: seconds of simulated time per env step, for ``time_remaining``
        :param env_success_counts: per-env success counts the envs keep themselves,
            used for envs that gave no success signal in their infos; None if unknown
        :param step_infos: the infos of the latest step, for ``contact_info``
        :param copied: ``detailed_infos`` and ``performance_metrics`` are already
            :func:`plain_copy` results nobody else holds (as :class:`EnvStateReader`
            returns them): used as they are, not copied again; default False
        """
        records = []
        for env_id in range(self.num_envs):
            detailed = detailed_infos[env_id] if detailed_infos is not None else None
            performance = performance_metrics[env_id] if performance_metrics is not None else None
            step_info = step_infos[env_id] if step_infos is not None and env_id < len(step_infos) else None
            current_step = self.current_step(env_id)
            success_count = self.success_counts[env_id]
            if env_success_counts is not None and not self._episodes_with_success_info[env_id]:
                success_count = env_success_counts[env_id]
            records.append(
                {
                    "timestep": timestep,
                    "env_id": env_id,
                    "episode_count": self.episode_counts[env_id],
                    "success_count": success_count,
                    "success_rate": self.success_rate(env_id),
                    "detailed_info": _detailed_info(
                        current_step, detailed, performance, max_episode_steps, dt, step_info, self.problems, copied
                    ),
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
    step_info: dict[str, Any] | None = None,
    problems: ValueProblems | None = None,
    copied: bool = False,
) -> dict[str, Any]:
    """Copies of the env's own detailed state where it gives one, the tracker's estimate otherwise.

    Keys of ``detailed`` other than the three known ones are kept as they are; values
    that cannot be copied become placeholders (see :func:`plain_copy`). With ``copied``,
    ``detailed`` and ``performance`` are plain copies of our own, taken over (and changed).
    """
    if detailed is None or not isinstance(detailed, Mapping):  # None first: no ABC check for envs without it
        detailed = {}
    elif not copied:
        detailed = plain_copy(detailed, problems)
    episode_info = detailed.pop("episode_info", None)
    robot_state = detailed.pop("robot_state", None)
    foot_contacts = detailed.pop("foot_contacts", None)
    if foot_contacts is None and CONTACT_INFO_KEY not in detailed and step_info is not None:
        contact_info = step_info.get(CONTACT_INFO_KEY)
        if contact_info is not None:
            foot_contacts = plain_copy(contact_info, problems)
    if not isinstance(episode_info, dict):
        episode_info = {}
    if episode_info.get("current_step") is None:
        episode_info["current_step"] = current_step
    if episode_info.get("time_remaining") is None:
        steps_left = max_episode_steps - episode_info["current_step"] if max_episode_steps is not None else None
        episode_info["time_remaining"] = steps_left * dt if steps_left is not None and dt is not None else None
    if performance is None:
        performance = {
            "episode_progress": current_step / max_episode_steps if max_episode_steps else None,
            "stability_score": None,
        }
    elif not copied:
        performance = plain_copy(performance, problems)
    return {
        "episode_info": episode_info,
        "robot_state": robot_state,
        "performance_metrics": performance,
        "foot_contacts": foot_contacts,
        **detailed,
    }
