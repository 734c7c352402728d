"""Learning-progress bookkeeping and the ``learning_metrics`` records.

:class:`LearningMetricsTracker` averages the per-step ``reward_components`` /
``cost_components`` the environments put in their infos (or, for envs that put
their terms in the info itself, its ``reward_*``/``cost_*`` numbers), remembers
the last value the SB3 logger held for each key (the logger clears its values on
every dump; :class:`LoggerValueCapture` receives each dump), and measures
throughput and memory at each save.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psutil
from stable_baselines3.common.logger import KVWriter, Logger

from rtsave_async.collectors.values import REAL_NUMBER_TYPES, ValueProblems

REWARD_COMPONENTS = "reward_components"
COST_COMPONENTS = "cost_components"
#: Prefixes of flat info keys read as reward / cost terms when an info has no component dicts.
REWARD_PREFIX = "reward_"
COST_PREFIX = "cost_"

#: ``memory_usage_mb`` is re-read at most this often, in seconds (saves in between reuse it).
MEMORY_REFRESH_INTERVAL_S = 1.0

_STATM_PATH = "/proc/self/statm"
_statm: tuple[int, int] | None = None  # (pid that opened it, descriptor)


def resident_memory_mb() -> float:
    """Resident set size of this process in MiB (what ``psutil.Process().memory_info().rss`` gives).

    On Linux this is one ``pread`` of ``/proc/self/statm`` on a descriptor kept open
    per process (about 1.5 µs, against about 11 µs for psutil, which opens the file
    each time); elsewhere it falls back to psutil.
    """
    global _statm
    pid = os.getpid()
    if _statm is None or _statm[0] != pid:  # first call, or in a forked child
        try:
            _statm = (pid, os.open(_STATM_PATH, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return psutil.Process().memory_info().rss / 2**20
    resident_pages = int(os.pread(_statm[1], 128, 0).split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class ComponentAverager:
    """Running mean per name of one info's reward or cost terms, reset by :meth:`take_means`.

    What a term may be, and what its mean is:

    * a real number (Python or numpy; a one-element array or tensor counts as one): averaged as a float;
    * a numeric vector (numpy array, torch tensor, list or tuple of numbers with more
      than one element, e.g. one value per foot): averaged element-wise and written as a
      list of the same shape, as long as the shape stays the same (a sample of another
      shape is skipped and counted);
    * anything else (None, a string, a meta tensor): skipped and counted in ``problems``;
      a name that never had a usable value is written as a placeholder giving the reason.

    Terms that are not a mapping of name -> value (a bare list or array) are skipped and
    counted; with no usable name at all the means are that placeholder.

    :param field: the info key the terms come from (``reward_components``), for messages
    :param problems: where skipped values are counted; default a fresh one
    """

    def __init__(self, field: str = REWARD_COMPONENTS, problems: ValueProblems | None = None) -> None:
        self.field = field
        self.problems = problems if problems is not None else ValueProblems()
        self._sums: dict[Any, float] = {}
        self._counts: dict[Any, int] = {}
        self._vectors: dict[Any, list[Any]] = {}  # name -> [sum array (ours), count]
        self._unusable: dict[Any, dict[str, str]] = {}  # name -> placeholder of its last unusable value
        self._not_a_mapping: dict[str, str] | None = None

    def add(self, components: Mapping[str, Any]) -> None:
        """Add one sample per name (one env's components at one step)."""
        if type(components) is not dict and not isinstance(components, Mapping):  # ABC check only for others
            self._not_a_mapping = self.problems.placeholder(
                components, f"{self.field} not a mapping", "expected name -> number")
            return
        sums, counts = self._sums, self._counts
        for name, value in components.items():
            if type(value) is not float and type(value) is not int:
                value = self._usable(name, value)
                if value is None:
                    continue
                if type(value) is np.ndarray:
                    self._add_vector(name, value)
                    continue
            if name in sums:
                sums[name] += value
                counts[name] += 1
            else:
                self._add_first_number(name, value)

    def add_real_numbers(self, info: Mapping[str, Any], terms: Sequence[tuple[Any, Any]]) -> None:
        """Add ``info[key]`` under ``name`` for each ``(key, name)`` of ``terms`` whose value
        is a real number (as a float unless it is a Python int); other values are left out,
        uncounted (one env's flat ``reward_*`` terms at one step)."""
        sums, counts = self._sums, self._counts
        for key, name in terms:
            value = info[key]
            kind = type(value)
            if kind is not float and kind is not int:
                if not _is_real_number_type(kind):
                    continue
                value = float(value)
            if name in sums:
                sums[name] += value
                counts[name] += 1
            else:
                self._add_first_number(name, value)

    def _add_first_number(self, name: Any, value: float | int) -> None:
        if name in self._vectors:
            self._changed_shape(name, value, self._vectors[name][0])
        else:
            self._sums[name] = value
            self._counts[name] = 1

    def _add_vector(self, name: Any, vector: np.ndarray) -> None:
        entry = self._vectors.get(name)
        if entry is not None and entry[0].shape == vector.shape:
            entry[0] += vector
            entry[1] += 1
        elif entry is not None or name in self._sums:
            self._changed_shape(name, vector, entry[0] if entry is not None else self._sums[name])
        else:
            self._vectors[name] = [vector, 1]

    def _changed_shape(self, name: Any, value: Any, total: Any) -> None:
        self._unusable[name] = self.problems.placeholder(
            value, f"{self.field} changed shape", f"{name!r} was {np.shape(total)}, now {np.shape(value)}")

    def _usable(self, name: Any, value: Any) -> float | np.ndarray | None:
        """``value`` as a float or a float64 array of our own, or None (counted) if it is not numeric."""
        if isinstance(value, REAL_NUMBER_TYPES):
            return float(value)
        try:
            if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
                value = value.detach().cpu().numpy()
            array = np.array(value, dtype=np.float64) if _is_numeric(value) else None
        except Exception as exc:  # a meta tensor, ragged lists
            array, reason = None, repr(exc)[:200]
        else:
            reason = "not a number or a numeric array"
        if array is None:
            self._unusable[name] = self.problems.placeholder(value, f"{self.field} not numeric", f"{name!r}: {reason}")
            return None
        return float(array.reshape(())) if array.size == 1 else array

    def take_means(self) -> dict[str, Any] | None:
        """Mean of each name since the last call (None if nothing was added), then reset.

        Names that only had unusable values map to a placeholder; with no names at all,
        the placeholder of a sample that was not a mapping, if there was one.
        """
        means: dict[Any, Any] = {name: float(total / self._counts[name]) for name, total in self._sums.items()}
        means.update({name: (total / count).tolist() for name, (total, count) in self._vectors.items()})
        for name, marked in self._unusable.items():
            means.setdefault(name, marked)
        result = means or self._not_a_mapping
        self._sums, self._counts, self._vectors, self._unusable, self._not_a_mapping = {}, {}, {}, {}, None
        return result


def _is_numeric(value: Any) -> bool:
    """True for numpy arrays of booleans or real numbers and for lists/tuples of real numbers."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    return isinstance(value, (list, tuple)) and all(isinstance(item, REAL_NUMBER_TYPES) for item in value)


class LearningMetricsTracker:
    """Collects what a ``learning_metrics`` record needs between two saves.

    :param start_timestep: ``model.num_timesteps`` when training (re)started; the
        first ``fps`` is measured from here
    :param problems: where unusable reward/cost terms are counted; default a fresh one
    """

    def __init__(self, start_timestep: int = 0, problems: ValueProblems | None = None):
        problems = problems if problems is not None else ValueProblems()
        self.reward_components = ComponentAverager(REWARD_COMPONENTS, problems)
        self.cost_components = ComponentAverager(COST_COMPONENTS, problems)
        self.logger_values: dict[str, float | int] = {}
        self._last_timestep = start_timestep
        self._last_time = time.perf_counter()
        self._memory_mb = 0.0
        self._memory_read_time = float("-inf")

    def record_step(self, infos: Sequence[Mapping[str, Any]]) -> None:
        """Accumulate the reward and cost terms of one VecEnv step.

        ``info["reward_components"]``/``info["cost_components"]`` when the info has them,
        else its numeric ``reward_<name>``/``cost_<name>`` keys (as Gymnasium's MuJoCo
        envs report them), under ``<name>``.
        """
        for info in infos:
            rewards = info.get(REWARD_COMPONENTS)
            costs = info.get(COST_COMPONENTS)
            if rewards is None and costs is None:
                if info:  # most steps of most envs have an empty info: nothing to look through
                    reward_terms, cost_terms = _flat_terms_of(tuple(info))
                    if reward_terms:
                        self.reward_components.add_real_numbers(info, reward_terms)
                    if cost_terms:
                        self.cost_components.add_real_numbers(info, cost_terms)
                continue
            if rewards is not None:  # not ``if rewards``: an array has no truth value
                self.reward_components.add(rewards)
            if costs is not None:
                self.cost_components.add(costs)

    def remember_logger_values(self, name_to_value: Mapping[str, Any]) -> None:
        """Keep the latest numeric value of every key the SB3 logger currently holds.

        Python and numpy ints/floats are kept (as Python numbers); videos, figures,
        strings and other logged objects are skipped.
        """
        logger_values = self.logger_values
        for name, value in name_to_value.items():
            if isinstance(value, REAL_NUMBER_TYPES):
                logger_values[name] = value.item() if isinstance(value, np.generic) else value

    def take_record(
        self,
        timestep: int,
        total_timesteps: int | None,
        recent_success_rate_avg: float | None,
        curriculum_progress: float | None,
    ) -> dict[str, Any]:
        """The ``learning_metrics`` record for this save; starts a new averaging period.

        ``fps`` is environment timesteps per wall-clock second since the previous
        save; ``training_progress`` is ``timestep / total_timesteps`` within [0, 1]
        (None if the total is unknown); ``memory_usage_mb`` is the resident set size in MiB (2**20 bytes), at most
        :data:`MEMORY_REFRESH_INTERVAL_S` old.
        """
        now = time.perf_counter()
        elapsed = now - self._last_time
        fps = (timestep - self._last_timestep) / elapsed if elapsed > 0 else None
        self._last_timestep, self._last_time = timestep, now
        if now - self._memory_read_time >= MEMORY_REFRESH_INTERVAL_S:
            self._memory_mb, self._memory_read_time = resident_memory_mb(), now
        return {
            "timestep": timestep,
            "total_timesteps": total_timesteps,
            "training_progress": min(1.0, max(0.0, timestep / total_timesteps)) if total_timesteps else None,
            "recent_success_rate_avg": recent_success_rate_avg,
            "curriculum_progress": curriculum_progress,
            "memory_usage_mb": self._memory_mb,
            "fps": fps,
            "reward_components": self.reward_components.take_means(),
            "cost_components": self.cost_components.take_means(),
            "logger": dict(self.logger_values),
        }


def _flat_terms_of(keys: tuple[Any, ...]) -> tuple[tuple[tuple[Any, str], ...], tuple[tuple[Any, str], ...]]:
    """``(key, name)`` of the ``reward_<name>`` keys among an info's ``keys``, and of its
    ``cost_<name>`` keys. Runs for every env at every step: an env's infos have a few
    key sets, each worked out once."""
    terms = _FLAT_TERMS.get(keys)
    if terms is None:
        found: tuple[list[tuple[Any, str]], list[tuple[Any, str]]] = ([], [])
        for key in keys:
            term = _flat_term(key)
            if term is not None:
                found[term[0]].append((key, term[1]))
        terms = _remembered(_FLAT_TERMS, keys, (tuple(found[0]), tuple(found[1])))
    return terms


def _is_real_number_type(kind: type) -> bool:
    """Whether ``kind`` is one of :data:`REAL_NUMBER_TYPES` (or a subclass), looked up once per type."""
    real = _REAL_NUMBER_TYPE.get(kind)
    if real is None:
        real = _remembered(_REAL_NUMBER_TYPE, kind, issubclass(kind, REAL_NUMBER_TYPES))
    return real


#: An info's keys -> its flat reward and cost terms (:func:`_flat_terms_of`).
_FLAT_TERMS: dict[tuple[Any, ...], tuple[tuple[tuple[Any, str], ...], tuple[tuple[Any, str], ...]]] = {}
#: Type -> whether it is one of :data:`REAL_NUMBER_TYPES` (or a subclass).
_REAL_NUMBER_TYPE: dict[type, bool] = {}
_MAX_REMEMBERED = 4096  # key sets and types: a run's infos have a few dozen


def _flat_term(key: Any) -> tuple[int, str] | None:
    if type(key) is str:
        for index, prefix in enumerate((REWARD_PREFIX, COST_PREFIX)):
            if key.startswith(prefix):
                return index, key[len(prefix):]
    return None


def _remembered(table: dict[Any, Any], key: Any, value: Any) -> Any:
    """``value``, kept in ``table`` under ``key`` while it holds fewer than ``_MAX_REMEMBERED``."""
    if len(table) < _MAX_REMEMBERED:
        table[key] = value
    return value


class LoggerValueCapture(KVWriter):
    """An SB3 logger output that hands every dump to a :class:`LearningMetricsTracker`.

    Values a callback records and dumps at once (``EvalCallback``'s ``eval/*``) never
    stay in ``logger.name_to_value`` long enough to be copied from there; as one of
    the logger's output formats this sees each of them.

    :param tracker: where the dumped values go
    """

    def __init__(self, tracker: LearningMetricsTracker):
        self.tracker = tracker

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        self.tracker.remember_logger_values(key_values)

    def close(self) -> None:
        """Nothing to release (the tracker outlives the logger)."""

    def attach(self, logger: Logger) -> None:
        """Add this capture to ``logger``'s output formats (once)."""
        if self not in logger.output_formats:
            logger.output_formats.append(self)

    def detach(self, logger: Logger) -> None:
        """Remove this capture from ``logger``'s output formats, if it is there."""
        if self in logger.output_formats:
            logger.output_formats.remove(self)
