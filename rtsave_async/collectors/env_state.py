"""Reading environment state through a VecEnv, and the ``environment_states`` records.

Richer environments (such as the Go1 env) implement an optional protocol:

* ``get_environment_summary() -> dict`` (``environment_class``, ``ctrl_type``,
  ``biped``, ``frame_skip``, ``dt``, ...)
* ``get_detailed_episode_info() -> dict`` (keys ``episode_info``, ``robot_state``,
  ``foot_contacts``)
* ``get_performance_metrics() -> dict`` (keys ``episode_progress``, ``stability_score``)
* attributes ``rand_power: float`` and ``curriculum_progress: float``

:class:`EnvStateReader` probes which of these the VecEnv's environments have once
(``VecEnv.has_attr``) and afterwards reads each supported item with one batched
``env_method``/``get_attr`` call, so it behaves the same under ``DummyVecEnv``,
``SubprocVecEnv`` and VecEnv wrappers such as ``VecNormalize``. Anything an
environment does not provide reads as ``None``.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from rtsave_async.collectors.values import describe_space, plain_copy

GET_ENVIRONMENT_SUMMARY = "get_environment_summary"
GET_DETAILED_EPISODE_INFO = "get_detailed_episode_info"
GET_PERFORMANCE_METRICS = "get_performance_metrics"
RAND_POWER = "rand_power"
CURRICULUM_PROGRESS = "curriculum_progress"

#: Every optional protocol member, probed once per reader.
PROTOCOL_MEMBERS = (
    GET_ENVIRONMENT_SUMMARY,
    GET_DETAILED_EPISODE_INFO,
    GET_PERFORMANCE_METRICS,
    RAND_POWER,
    CURRICULUM_PROGRESS,
)

#: Summary fields read as plain attributes when the env has no ``get_environment_summary``.
SUMMARY_ATTRIBUTES = ("ctrl_type", "biped", "frame_skip", "dt")


class EnvStateReader:
    """Batched, probe-once access to the optional env-state protocol of a VecEnv.

    Construction talks to every environment a few times (probing); each read
    method afterwards makes at most one batched VecEnv call.

    :param venv: the training VecEnv (``model.get_env()``), possibly wrapped
    """

    def __init__(self, venv: VecEnv):
        self.venv = venv
        self.num_envs: int = venv.num_envs
        self.supported: dict[str, bool] = {name: venv.has_attr(name) for name in PROTOCOL_MEMBERS}
        spec = self._first_env_attribute("spec")
        #: ``TimeLimit`` step limit of the first env, or None.
        self.max_episode_steps: int | None = getattr(spec, "max_episode_steps", None)
        self.static_summary: dict[str, Any] = self._probe_static_summary(spec)
        #: Seconds of simulated time per env step, or None if the env has no ``dt``.
        self.dt: float | None = self.static_summary["dt"]

    def _first_env_attribute(self, name: str) -> Any:
        """Attribute ``name`` of env 0 (through its wrappers), or None if it has none."""
        if not self.venv.has_attr(name):
            return None
        return self.venv.get_attr(name, indices=[0])[0]

    def _probe_static_summary(self, spec: Any) -> dict[str, Any]:
        summary: dict[str, Any] = {"environment_class": self._environment_class(spec)}
        for name in SUMMARY_ATTRIBUTES:
            summary[name] = plain_copy(self._first_env_attribute(name))
        summary["env_id"] = getattr(spec, "id", None)
        summary["max_episode_steps"] = self.max_episode_steps
        summary["observation_space"] = describe_space(self.venv.observation_space)
        summary["action_space"] = describe_space(self.venv.action_space)
        summary["vec_env_class"] = type(self.venv).__name__
        return summary

    def _environment_class(self, spec: Any) -> str | None:
        """Class name of the innermost env: read directly in-process, else from its spec."""
        base_venv = self.venv.unwrapped  # below every VecEnvWrapper
        if isinstance(base_venv, DummyVecEnv):
            return type(base_venv.envs[0].unwrapped).__name__
        entry_point = getattr(spec, "entry_point", None)
        if isinstance(entry_point, str):
            return entry_point.rsplit(":", 1)[-1]
        return getattr(entry_point, "__name__", None)

    def environment_summary(self) -> dict[str, Any]:
        """Static summary, overridden by env 0's ``get_environment_summary()`` if it has one.

        Returns a fresh dict on every call (safe to hand to the writer).
        """
        summary = dict(self.static_summary)
        if self.supported[GET_ENVIRONMENT_SUMMARY]:
            summary.update(plain_copy(self.venv.env_method(GET_ENVIRONMENT_SUMMARY, indices=[0])[0]))
        return summary

    def detailed_episode_info(self) -> list[dict[str, Any]] | None:
        """Per-env ``get_detailed_episode_info()`` results (not yet copied), or None."""
        return self._call_all(GET_DETAILED_EPISODE_INFO)

    def performance_metrics(self) -> list[dict[str, Any]] | None:
        """Per-env ``get_performance_metrics()`` results (not yet copied), or None."""
        return self._call_all(GET_PERFORMANCE_METRICS)

    def rand_power(self) -> list[float] | None:
        """Per-env ``rand_power`` (domain-randomization strength), or None."""
        return self._read_all(RAND_POWER)

    def curriculum_progress(self) -> float | None:
        """Mean ``curriculum_progress`` over the envs, or None if they have none."""
        values = self._read_all(CURRICULUM_PROGRESS)
        if not values:
            return None
        return sum(values) / len(values)

    def _call_all(self, method_name: str) -> list[Any] | None:
        return self.venv.env_method(method_name) if self.supported[method_name] else None

    def _read_all(self, attribute_name: str) -> list[Any] | None:
        if not self.supported[attribute_name]:
            return None
        return plain_copy(self.venv.get_attr(attribute_name))


def build_environment_state_record(timestep: int, reader: EnvStateReader) -> dict[str, Any]:
    """The ``environment_states`` record: ``timestep``, ``num_envs``, ``rand_power``, ``environment_summary``."""
    return {
        "timestep": timestep,
        "num_envs": reader.num_envs,
        "rand_power": reader.rand_power(),
        "environment_summary": reader.environment_summary(),
    }
