"""Reading environment state through a VecEnv, and the ``environment_states`` records.

Richer environments (such as the Go1 env) implement an optional protocol:

* ``get_environment_summary() -> dict`` (``environment_class``, ``ctrl_type``,
  ``biped``, ``frame_skip``, ``dt``, ...; every key is kept)
* ``get_detailed_episode_info() -> dict`` (keys ``episode_info``, ``robot_state``,
  ``foot_contacts``; other keys are kept as they are)
* ``get_performance_metrics() -> dict`` (keys ``episode_progress``, ``stability_score``, ...)
* attributes read under the first name the env has (:data:`DEFAULT_ENV_ATTRIBUTES`):
  ``rand_power`` (or ``_rand_power``), ``curriculum_progress`` (or ``curriculum_factor``),
  ``success_count`` (or ``_success_count``) and ``max_episode_steps`` (when the env's
  spec has none); ``env_attributes`` maps a field to the env's own name instead.

:class:`EnvStateReader` probes which of these the VecEnv's environments have once
(``VecEnv.has_attr``) and afterwards reads each supported item with one batched
``env_method``/``get_attr`` call, so it behaves the same under ``DummyVecEnv``,
``SubprocVecEnv`` and VecEnv wrappers such as ``VecNormalize``. Anything an
environment does not provide reads as ``None``; so does a protocol method that raises
(counted, one warning per method). Every value is read with :func:`read_plain`, in
the env's own process: a ``SubprocVecEnv`` worker sends only plain copies, never a
value it cannot pickle (which would kill the worker).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from rtsave_async.collectors.values import REAL_NUMBER_TYPES, ValueProblems, describe_space, plain_copy

GET_ENVIRONMENT_SUMMARY = "get_environment_summary"
GET_DETAILED_EPISODE_INFO = "get_detailed_episode_info"
GET_PERFORMANCE_METRICS = "get_performance_metrics"
RAND_POWER = "rand_power"
CURRICULUM_PROGRESS = "curriculum_progress"
SUCCESS_COUNT = "success_count"
MAX_EPISODE_STEPS = "max_episode_steps"

#: Optional protocol methods, probed once per reader.
PROTOCOL_METHODS = (GET_ENVIRONMENT_SUMMARY, GET_DETAILED_EPISODE_INFO, GET_PERFORMANCE_METRICS)

#: Record field -> env attribute names tried in order; the first one the env has is read.
DEFAULT_ENV_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    RAND_POWER: ("rand_power", "_rand_power"),
    CURRICULUM_PROGRESS: ("curriculum_progress", "curriculum_factor"),
    SUCCESS_COUNT: ("success_count", "_success_count"),
    MAX_EPISODE_STEPS: ("max_episode_steps", "_max_episode_steps"),
}

#: Summary fields read as plain attributes when the env has no ``get_environment_summary``.
SUMMARY_ATTRIBUTES = ("ctrl_type", "biped", "frame_skip", "dt")


def env_attribute_names(overrides: Mapping[str, str | Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """:data:`DEFAULT_ENV_ATTRIBUTES` with the user's names for some fields instead.

    :param overrides: field -> the env's attribute name (or names, tried in order),
        e.g. ``{"rand_power": "_rand_power"}``
    :raises ValueError: naming an unknown field
    """
    names = dict(DEFAULT_ENV_ATTRIBUTES)
    for field, attribute in (overrides or {}).items():
        if field not in names:
            raise ValueError(f"env_attributes: unknown field {field!r}; known fields: {', '.join(names)}")
        names[field] = (attribute,) if isinstance(attribute, str) else tuple(attribute)
    return names


#: Env attribute under which :class:`WorkerSideRead` is set on the envs of a ``SubprocVecEnv``.
WORKER_SIDE_READ = "_rtsave_read_plain"


def read_plain(env: gym.Env, name: str, call: bool, problems: ValueProblems, owner: Any = None) -> Any:
    """Attribute ``name`` of ``env`` (through its wrappers), or the result of calling it
    with ``call``, as a :func:`plain_copy`; None (counted in ``problems``) if that raises.

    :param owner: the env or wrapper of ``env``'s chain that holds ``name`` (see
        :func:`attribute_owner`), read directly instead of walking the chain; default None
    """
    try:
        value = getattr(owner, name) if owner is not None else env.get_wrapper_attr(name)
        if call:
            value = value()
    except Exception as exc:
        problems.report(f"{name} raised", f"{name}{'()' if call else ''} raised {exc!r:.200}; its fields are null")
        return None
    return plain_copy(value, problems)


def attribute_owner(env: gym.Env, name: str) -> Any:
    """The outermost of ``env`` and the envs it wraps that has attribute ``name`` (where
    ``get_wrapper_attr`` finds it), or None if none has it or looking raised."""
    try:
        while not hasattr(env, name):
            env = env.env
    except Exception:  # the innermost env lacks it (no .env), or a property raised
        return None
    return env


class WorkerSideRead:
    """:func:`read_plain` inside a ``SubprocVecEnv`` worker, returning only picklable values.

    SB3's worker process dies if an env method raises or returns a value it cannot
    pickle. Set on every env (``set_attr``) and called through ``env_method``, this
    reads in the worker and sends ``(plain value, problem counts, first messages)``.
    ``env_method`` hands it no env: it takes the ``env`` of the worker loop that calls it
    (``stable_baselines3.common.vec_env.subproc_vec_env._worker``).
    """

    def __call__(self, name: str, call: bool) -> tuple[Any, dict[str, int], dict[str, str]]:
        problems = ValueProblems(warn=False)
        env = sys._getframe(1).f_locals.get("env")
        if not isinstance(env, gym.Env):
            problems.report("worker env not found", f"could not find the env of the SubprocVecEnv worker to read {name}")
            return None, problems.counts, problems.first_messages
        return read_plain(env, name, call, problems), problems.counts, problems.first_messages


class EnvStateReader:
    """Batched, probe-once access to the optional env-state protocol of a VecEnv.

    Construction talks to every environment a few times (probing); each read
    method afterwards makes at most one batched VecEnv call.

    :param venv: the training VecEnv (``model.get_env()``), possibly wrapped; None when
        no model is attached (one env assumed; everything reads as None)
    :param env_attributes: field -> the env's attribute name(s), replacing the defaults
        of :data:`DEFAULT_ENV_ATTRIBUTES` for that field; default None
    :param problems: where values that could not be read or copied are counted; default a fresh one
    """

    def __init__(
        self,
        venv: VecEnv | None,
        env_attributes: Mapping[str, str | Sequence[str]] | None = None,
        problems: ValueProblems | None = None,
    ):
        self.venv = venv
        self.num_envs: int = venv.num_envs if venv is not None else 1
        self.problems = problems if problems is not None else ValueProblems()
        base_venv = venv.unwrapped if venv is not None else None
        self._local_envs: list[gym.Env] | None = base_venv.envs if isinstance(base_venv, DummyVecEnv) else None
        #: Attribute name -> per local env, the object holding it (found once: no chain walk per save).
        self._owners: dict[str, list[Any]] = {}
        self._in_workers = isinstance(base_venv, SubprocVecEnv)
        if self._in_workers:
            venv.set_attr(WORKER_SIDE_READ, WorkerSideRead())
        has_attr = venv.has_attr if venv is not None else (lambda name: False)
        self.supported: dict[str, bool] = {name: has_attr(name) for name in PROTOCOL_METHODS}
        #: Field -> the env attribute it is read from, or None if the env has none of its names.
        self.attribute_names: dict[str, str | None] = {
            field: next((name for name in names if has_attr(name)), None)
            for field, names in env_attribute_names(env_attributes).items()
        }
        self.supported.update({field: name is not None for field, name in self.attribute_names.items()})
        spec = venv.get_attr("spec", indices=[0])[0] if venv is not None and venv.has_attr("spec") else None
        #: Episode step limit: the ``TimeLimit`` of the env's spec, else its own attribute, or None.
        self.max_episode_steps: int | None = getattr(spec, "max_episode_steps", None)
        if self.max_episode_steps is None and self.attribute_names[MAX_EPISODE_STEPS] is not None:
            self.max_episode_steps = plain_copy(self._first_env_attribute(self.attribute_names[MAX_EPISODE_STEPS]))
        self.static_summary: dict[str, Any] = self._probe_static_summary(spec)
        #: Seconds of simulated time per env step, or None if the env has no ``dt``.
        self.dt: float | None = self.static_summary["dt"]

    def _first_env_attribute(self, name: str) -> Any:
        """Attribute ``name`` of env 0 (through its wrappers) as a plain copy, or None if it has none."""
        if self.venv is None or not self.venv.has_attr(name):
            return None
        return self._read(name, call=False, indices=[0])[0]

    def _probe_static_summary(self, spec: Any) -> dict[str, Any]:
        summary: dict[str, Any] = {"environment_class": self._environment_class(spec)}
        for name in SUMMARY_ATTRIBUTES:
            summary[name] = plain_copy(self._first_env_attribute(name))
        summary["env_name"] = getattr(spec, "id", None)
        summary["max_episode_steps"] = self.max_episode_steps
        venv = self.venv
        summary["observation_space"] = describe_space(venv.observation_space) if venv is not None else None
        summary["action_space"] = describe_space(venv.action_space) if venv is not None else None
        summary["vec_env_class"] = type(venv).__name__ if venv is not None else None
        return summary

    def _environment_class(self, spec: Any) -> str | None:
        """Class name of the innermost env: read directly in-process, else from its spec."""
        if self.venv is None:
            return None
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
            own = self._read(GET_ENVIRONMENT_SUMMARY, call=True, indices=[0])[0]
            if isinstance(own, dict):
                summary.update(own)
        return summary

    def detailed_episode_info(self) -> list[dict[str, Any]] | None:
        """Per-env ``get_detailed_episode_info()`` results (plain copies; None where it raised), or None."""
        return self._call_all(GET_DETAILED_EPISODE_INFO)

    def performance_metrics(self) -> list[dict[str, Any]] | None:
        """Per-env ``get_performance_metrics()`` results (plain copies; None where it raised), or None."""
        return self._call_all(GET_PERFORMANCE_METRICS)

    def rand_power(self) -> list[float] | None:
        """Per-env ``rand_power`` (domain-randomization strength), or None."""
        return self._read_all(RAND_POWER)

    def success_counts(self) -> list[int] | None:
        """Per-env success count the envs keep themselves (e.g. ``_success_count``), or None."""
        return self._read_all(SUCCESS_COUNT)

    def curriculum_progress(self) -> float | None:
        """Mean ``curriculum_progress`` over the envs that report a number, or None if none does."""
        values = [value for value in self._read_all(CURRICULUM_PROGRESS) or () if isinstance(value, REAL_NUMBER_TYPES)]
        if not values:
            return None
        return sum(values) / len(values)

    def _call_all(self, method_name: str) -> list[Any] | None:
        return self._read(method_name, call=True) if self.supported[method_name] else None

    def _read_all(self, field: str) -> list[Any] | None:
        attribute_name = self.attribute_names[field]
        if attribute_name is None:
            return None
        return self._read(attribute_name, call=False)

    def _read(self, name: str, call: bool, indices: list[int] | None = None) -> list[Any]:
        """:func:`read_plain` of attribute/method ``name`` for the envs ``indices`` (default all), one batched call."""
        if self._local_envs is not None:
            owners = self._owners.get(name)
            if owners is None:
                owners = self._owners[name] = [attribute_owner(env, name) for env in self._local_envs]
            envs = range(len(self._local_envs)) if indices is None else indices
            return [read_plain(self._local_envs[index], name, call, self.problems, owners[index]) for index in envs]
        if self._in_workers:
            results = self.venv.env_method(WORKER_SIDE_READ, name, call, indices=indices)
            for _, counts, first_messages in results:
                self.problems.merge(counts, first_messages)
            return [value for value, _, _ in results]
        try:  # another VecEnv: read through its own interface
            values = self.venv.env_method(name, indices=indices) if call else self.venv.get_attr(name, indices)
        except Exception as exc:
            self.problems.report(f"{name} raised", f"{name} raised {exc!r:.200}; its fields are null")
            return [None] * (self.num_envs if indices is None else len(indices))
        return plain_copy(values, self.problems)


def build_environment_state_record(timestep: int, reader: EnvStateReader) -> dict[str, Any]:
    """The ``environment_states`` record: ``timestep``, ``num_envs``, ``rand_power``, ``environment_summary``."""
    return {
        "timestep": timestep,
        "num_envs": reader.num_envs,
        "rand_power": reader.rand_power(),
        "environment_summary": reader.environment_summary(),
    }
