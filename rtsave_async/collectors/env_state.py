"""Reading environment state through a VecEnv, and the ``environment_states`` records.

Richer environments (such as the Go1 env) implement an optional protocol:

* ``get_environment_summary() -> dict`` (``environment_class``, ``ctrl_type``,
  ``biped``, ``frame_skip``, ``dt``, ...; every key is kept)
* ``get_detailed_episode_info() -> dict`` (keys ``episode_info``, ``robot_state``,
  ``foot_contacts``; other keys are kept as they are)
* ``get_performance_metrics() -> dict`` (keys ``episode_progress``, ``stability_score``, ...)
* ``rtsave_results_are_fresh = True`` (optional): a promise that the three methods
  above return new plain values (dict, list, str, int, float, bool, None) on every
  call, which the env never touches again; their copy is then skipped
* attributes read under the first name the env has (:data:`DEFAULT_ENV_ATTRIBUTES`):
  ``rand_power`` (or ``_rand_power``), ``curriculum_progress`` (or ``curriculum_factor``),
  ``success_count`` (or ``_success_count``) and ``max_episode_steps`` (when the env's
  spec has none); ``env_attributes`` maps a field to the env's own name instead.

:class:`EnvStateReader` probes which of these the VecEnv's environments have once
(``VecEnv.has_attr``) and afterwards reads what a save needs in one batched call
(:meth:`EnvStateReader.read`: under ``SubprocVecEnv`` one round trip per worker, none
for envs wrapped in :class:`ReadingsInStepInfo`), so
it behaves the same under ``DummyVecEnv``, ``SubprocVecEnv`` and VecEnv wrappers such
as ``VecNormalize``. Anything an
environment does not provide reads as ``None``; so does a protocol method that raises
(counted, one warning per method). Every value is read with :func:`read_plain`, in
the env's own process: a ``SubprocVecEnv`` worker sends only plain copies, never a
value it cannot pickle (which would kill the worker).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
#: Env attribute: True promises that the protocol methods return fresh plain values (not copied then).
RESULTS_ARE_FRESH = "rtsave_results_are_fresh"

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

#: One read: ``(attribute name, call it?, env 0 only?)``.
Request = tuple[str, bool, bool]


def read_plain(env: gym.Env, name: str, call: bool, problems: ValueProblems, owner: Any = None,
               fresh: bool = False) -> Any:
    """Attribute ``name`` of ``env`` (through its wrappers), or the result of calling it
    with ``call``, as a :func:`plain_copy`; None (counted in ``problems``) if that raises.

    :param owner: the env or wrapper of ``env``'s chain that holds ``name`` (see
        :func:`attribute_owner`), read directly instead of walking the chain; default None
    :param fresh: a call's result is fresh plain values already (the env promises it,
        :data:`RESULTS_ARE_FRESH`): returned as it is; default False
    """
    try:
        value = getattr(owner, name) if owner is not None else env.get_wrapper_attr(name)
        if call:
            value = value()
    except Exception as exc:
        problems.report(f"{name} raised", f"{name}{'()' if call else ''} raised {exc!r:.200}; its fields are null")
        return None
    return value if call and fresh else plain_copy(value, problems)


def attribute_owner(env: gym.Env, name: str) -> Any:
    """The outermost of ``env`` and the envs it wraps that has attribute ``name`` (where
    ``get_wrapper_attr`` finds it), or None if none has it or looking raised."""
    try:
        while not hasattr(env, name):
            env = env.env
    except Exception:  # the innermost env lacks it (no .env), or a property raised
        return None
    return env


#: What a worker sends back for a batch of requests: (values, problem counts, first messages).
WorkerReads = tuple[list[Any], dict[str, int], dict[str, str]]
#: What :class:`ReadingsInStepInfo` puts into a step's info: the requests, then their :data:`WorkerReads`.
StepReads = tuple[list[Request], list[Any], dict[str, int], dict[str, str]]


class WorkerSideRead:
    """:func:`read_plain` of several requests inside a ``SubprocVecEnv`` worker, in one round trip.

    SB3's worker process dies if an env method raises or returns a value it cannot
    pickle. Set on each env (``set_attr``) and called through ``env_method``, this
    reads every request in the worker and sends ``(plain values, problem counts, first
    messages)``: one round trip per worker for a whole save. ``env_method`` hands it no
    env: it takes the ``env`` of the worker loop that calls it
    (``stable_baselines3.common.vec_env.subproc_vec_env._worker``).

    :param env_index: the index of the env it is set on; a request for env 0 only
        reads as None elsewhere
    :param fresh: the env's protocol methods return fresh plain values (not copied); default False
    """

    def __init__(self, env_index: int, fresh: bool = False):
        self.env_index = env_index
        self.fresh = fresh
        self._owners: dict[str, Any] = {}

    def __call__(self, requests: Sequence[Request]) -> WorkerReads:
        env = sys._getframe(1).f_locals.get("env")
        if not isinstance(env, gym.Env):
            problems = ValueProblems(warn=False)
            problems.report("worker env not found", "could not find the env of the SubprocVecEnv worker to read "
                            + ", ".join(name for name, _, _ in requests))
            return [None] * len(requests), problems.counts, problems.first_messages
        return self.read(env, requests)

    def read(self, env: gym.Env, requests: Sequence[Request]) -> WorkerReads:
        """:func:`read_plain` of every request on ``env`` (and the envs it wraps)."""
        problems = ValueProblems(warn=False)
        values = []
        for name, call, first_env_only in requests:
            if first_env_only and self.env_index != 0:
                values.append(None)
                continue
            if name not in self._owners:
                self._owners[name] = attribute_owner(env, name)
            values.append(read_plain(env, name, call, problems, self._owners[name], self.fresh))
        return values, problems.counts, problems.first_messages


#: Method of :class:`ReadingsInStepInfo` an :class:`EnvStateReader` calls to start (or stop) it.
INSTALL_STEP_READINGS = "rtsave_install_step_readings"
#: Info key under which :class:`ReadingsInStepInfo` puts a step's readings.
STEP_READINGS_KEY = "rtsave_readings"


class SaveTrigger(Protocol):
    """What decides at which timesteps a save happens (the callback's ``TimestepTrigger``)."""

    def is_due(self, timestep: int) -> bool: ...


@dataclass
class SaveSteps:
    """Which steps a save follows, counted from a training start: the ``step``-th
    VecEnv step brings ``num_timesteps`` to ``first_timestep + step * step_timesteps``,
    and a save follows it when ``trigger`` (a copy of the callback's save trigger,
    restarted at ``first_timestep``) fires there."""

    first_timestep: int
    step_timesteps: int  # the VecEnv's num_envs
    trigger: SaveTrigger  # advanced by follows(): ask for every step, in order

    def follows(self, step: int) -> bool:
        """Whether a save follows step ``step`` (1 for the first step)."""
        return self.trigger.is_due(self.first_timestep + step * self.step_timesteps)


class ReadingsInStepInfo(gym.Wrapper):
    """Reads what a save needs inside the env's own process after each step a save
    follows, and sends it with the step's ``info``: under ``SubprocVecEnv`` a save then
    costs no round trip to the workers (saving every step with 4 Go1 envs: 0.73x ->
    0.89x of no saving, benchmarks/RESULTS.md).

    Opt-in: wrap each env, e.g. ``make_vec_env(env_id, n_envs, vec_env_cls=SubprocVecEnv,
    wrapper_class=ReadingsInStepInfo)``. It does nothing until a
    :class:`RealTimeSavingCallback`'s :class:`EnvStateReader` starts it at training
    start (one round trip per env) and again nothing after training ends. In between,
    the info of each step a save follows holds ``info["rtsave_readings"]``, which the
    callback takes out of the info (so no replay buffer keeps it).

    At a step that ends an episode, the readings are of the episode's last state (before
    the VecEnv resets the env); read through ``env_method`` they would be of the next
    episode's first state.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._reads: tuple[WorkerSideRead, list[Request], SaveSteps] | None = None
        self._steps = 0  # since the reads were started

    def rtsave_install_step_readings(self, read: WorkerSideRead | None, requests: list[Request] | None,
                                     save_steps: SaveSteps | None = None) -> None:
        """From the next step on, read ``requests`` with ``read`` at the steps
        ``save_steps`` says a save follows; ``read`` None stops it."""
        self._reads = None if read is None or requests is None or save_steps is None else (read, requests, save_steps)
        self._steps = 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if self._reads is not None:
            read, requests, save_steps = self._reads
            self._steps += 1
            if save_steps.follows(self._steps):
                info[STEP_READINGS_KEY] = (requests, *read.read(self.env, requests))
        return observation, reward, terminated, truncated, info


@dataclass(frozen=True)
class EnvReadings:
    """What one save read of the env-state protocol; a field is None where the envs do
    not provide it, or where it was not asked for (see :meth:`EnvStateReader.read`)."""

    #: Per env ``get_detailed_episode_info()`` (plain copies; None where it raised).
    detailed_episode_info: list[Any] | None = None
    #: Per env ``get_performance_metrics()`` (plain copies; None where it raised).
    performance_metrics: list[Any] | None = None
    #: Per env success count the envs keep themselves (e.g. ``_success_count``).
    success_counts: list[Any] | None = None
    #: Mean ``curriculum_progress`` over the envs that report a number.
    curriculum_progress: float | None = None
    #: Per env ``rand_power`` (domain-randomization strength).
    rand_power: list[Any] | None = None
    #: The static summary, overridden by env 0's ``get_environment_summary()`` (a fresh dict).
    environment_summary: dict[str, Any] | None = None


#: :class:`EnvReadings` fields by the record category that needs them.
EPISODE_READINGS = ("detailed_episode_info", "performance_metrics", "success_counts")
LEARNING_READINGS = ("curriculum_progress",)
ENVIRONMENT_READINGS = ("rand_power", "environment_summary")


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
        #: Fields asked of :meth:`read` -> field -> its request (for the fields the envs provide).
        self._requests: dict[tuple[str, ...], dict[str, Request]] = {}
        self._in_workers = isinstance(base_venv, SubprocVecEnv)
        has_attr = venv.has_attr if venv is not None else (lambda name: False)
        #: The envs promise fresh plain results of their protocol methods (:data:`RESULTS_ARE_FRESH`).
        self.fresh_results = has_attr(RESULTS_ARE_FRESH) and venv.get_attr(RESULTS_ARE_FRESH, indices=[0])[0] is True
        if self._in_workers:
            for index in range(self.num_envs):  # each knows its index: env-0-only requests
                venv.set_attr(WORKER_SIDE_READ, WorkerSideRead(index, self.fresh_results), indices=[index])
        #: The envs are wrapped in :class:`ReadingsInStepInfo`, worth starting in workers only.
        self._reads_in_steps = self._in_workers and has_attr(INSTALL_STEP_READINGS)
        self._step_requests: list[Request] | None = None  # what the wrappers read after save steps
        self._step_reads: list[StepReads] | None = None  # this step's, per env
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
        return self._read([(name, False, True)], indices=[0])[0][0]

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
        return self.read(["environment_summary"]).environment_summary

    def read(self, fields: Iterable[str]) -> EnvReadings:
        """The :class:`EnvReadings` ``fields`` (names of its fields), in one batched VecEnv
        call (one round trip per ``SubprocVecEnv`` worker); the other fields are None.

        :raises ValueError: naming an unknown field
        """
        fields = tuple(fields)
        requests = self._requests.get(fields)
        if requests is None:  # a save asks for the same fields every time: planned once
            requests = self._requests[fields] = {
                field: request for field in fields if (request := self._request(field)) is not None}
        values = dict(zip(requests, self._read_now(list(requests.values()))))
        readings: dict[str, Any] = {field: values.get(field) for field in fields}
        if "curriculum_progress" in readings:
            numbers = [value for value in readings["curriculum_progress"] or () if isinstance(value, REAL_NUMBER_TYPES)]
            readings["curriculum_progress"] = sum(numbers) / len(numbers) if numbers else None
        if "environment_summary" in readings:
            summary = dict(self.static_summary)
            own = (readings["environment_summary"] or [None])[0]
            if isinstance(own, dict):
                summary.update(own)
            readings["environment_summary"] = summary
        return EnvReadings(**readings)

    def _request(self, field: str) -> Request | None:
        """How ``field`` of :class:`EnvReadings` is read, or None if the envs do not provide it."""
        if field in _PROTOCOL_READINGS:
            method_name = _PROTOCOL_READINGS[field]
            return (method_name, True, method_name == GET_ENVIRONMENT_SUMMARY) if self.supported[method_name] else None
        if field not in _ATTRIBUTE_READINGS:
            known = ", ".join(EPISODE_READINGS + LEARNING_READINGS + ENVIRONMENT_READINGS)
            raise ValueError(f"EnvStateReader.read: unknown field {field!r}; known fields: {known}")
        attribute_name = self.attribute_names[_ATTRIBUTE_READINGS[field]]
        return None if attribute_name is None else (attribute_name, False, False)

    def read_in_steps(self, fields: Iterable[str], save_steps: SaveSteps) -> bool:
        """Start the :class:`ReadingsInStepInfo` wrappers of envs in ``SubprocVecEnv``
        workers on what :meth:`read` of ``fields`` needs, at the steps ``save_steps``
        counts from now (one round trip per env); a :meth:`read` of the same fields
        after :meth:`take_step_readings` of such a step then makes no round trip.
        Whether the envs have the wrappers (else nothing changes).

        :raises ValueError: naming an unknown field
        """
        requests = [request for field in fields if (request := self._request(field)) is not None]
        if not self._reads_in_steps or not requests:
            return False
        for index in range(self.num_envs):
            self.venv.env_method(INSTALL_STEP_READINGS, WorkerSideRead(index, self.fresh_results), requests,
                                 save_steps, indices=[index])
        self._step_requests = requests
        return True

    def take_step_readings(self, infos: Sequence[dict[str, Any]]) -> None:
        """Take this step's :class:`ReadingsInStepInfo` readings out of ``infos`` (call at
        every step; nothing to do unless the wrappers were started). A save read before
        the next step uses them instead of a round trip."""
        if self._step_requests is None:
            return
        reads = [info.pop(STEP_READINGS_KEY, None) if type(info) is dict else None for info in infos]
        self._step_reads = reads if len(reads) == self.num_envs and None not in reads else None  # no save follows

    def close(self) -> None:
        """Stop the :class:`ReadingsInStepInfo` wrappers this reader started (at training end)."""
        if self._step_requests is None:
            return
        self._step_requests = self._step_reads = None
        try:
            self.venv.env_method(INSTALL_STEP_READINGS, None, None)
        except (EOFError, OSError):  # the workers are gone already: nothing left to stop
            pass

    def _read_now(self, requests: list[Request]) -> list[list[Any]]:
        """This step's readings from the wrappers if they read ``requests``, else :meth:`_read`."""
        reads, self._step_reads = self._step_reads, None  # used once: a second save of a step reads anew
        if reads is not None and all(sent == requests for sent, _, _, _ in reads):
            return self._unpack_worker_reads([read[1:] for read in reads], requests)
        return self._read(requests)

    def _read(self, requests: list[Request], indices: list[int] | None = None) -> list[list[Any]]:
        """Per request, the :func:`read_plain` values of the envs ``indices`` (default all;
        env 0 only for a request that says so), in one batched call."""
        if not requests:
            return []
        if self._local_envs is not None:
            all_envs = list(range(len(self._local_envs))) if indices is None else indices
            return [self._read_locally(name, call, all_envs[:1] if first_env_only else all_envs)
                    for name, call, first_env_only in requests]
        if self._in_workers:
            return self._unpack_worker_reads(self.venv.env_method(WORKER_SIDE_READ, requests, indices=indices),
                                             requests)
        return [self._read_through_vec_env(name, call, [0] if first_env_only else indices)
                for name, call, first_env_only in requests]

    def _unpack_worker_reads(self, per_env: Sequence[WorkerReads], requests: list[Request]) -> list[list[Any]]:
        """Per request, the values the workers read (env 0's only for a request that says
        so); their problem counts added to ours."""
        for _, counts, first_messages in per_env:
            self.problems.merge(counts, first_messages)
        return [[values[position] for values, _, _ in per_env][:1 if first_env_only else None]
                for position, (_, _, first_env_only) in enumerate(requests)]

    def _read_locally(self, name: str, call: bool, envs: list[int]) -> list[Any]:
        """:func:`read_plain` of ``name`` for the DummyVecEnv's envs ``envs``; the object of
        each env's chain holding ``name`` is found once, not per save."""
        owners = self._owners.get(name)
        if owners is None:
            owners = self._owners[name] = [attribute_owner(env, name) for env in self._local_envs]
        return [read_plain(self._local_envs[index], name, call, self.problems, owners[index], self.fresh_results)
                for index in envs]

    def _read_through_vec_env(self, name: str, call: bool, indices: list[int] | None) -> list[Any]:
        """Attribute or method ``name`` read through another VecEnv's own interface."""
        try:
            values = self.venv.env_method(name, indices=indices) if call else self.venv.get_attr(name, indices)
        except Exception as exc:
            self.problems.report(f"{name} raised", f"{name} raised {exc!r:.200}; its fields are null")
            return [None] * (self.num_envs if indices is None else len(indices))
        return plain_copy(values, self.problems)


#: :class:`EnvReadings` field -> the protocol method it calls.
_PROTOCOL_READINGS = {
    "detailed_episode_info": GET_DETAILED_EPISODE_INFO,
    "performance_metrics": GET_PERFORMANCE_METRICS,
    "environment_summary": GET_ENVIRONMENT_SUMMARY,
}

#: :class:`EnvReadings` field -> the :data:`DEFAULT_ENV_ATTRIBUTES` field it reads.
_ATTRIBUTE_READINGS = {"success_counts": SUCCESS_COUNT, "curriculum_progress": CURRICULUM_PROGRESS,
                       "rand_power": RAND_POWER}


def build_environment_state_record(timestep: int, num_envs: int, readings: EnvReadings) -> dict[str, Any]:
    """The ``environment_states`` record: ``timestep``, ``num_envs``, ``rand_power``, ``environment_summary``.

    :param readings: the save's reads, with the :data:`ENVIRONMENT_READINGS`
    """
    return {
        "timestep": timestep,
        "num_envs": num_envs,
        "rand_power": readings.rand_power,
        "environment_summary": readings.environment_summary,
    }
