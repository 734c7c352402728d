"""Turning live training objects into detached, JSON-ready values, whatever they hold.

Everything a collector hands to the writer goes through :func:`plain_copy`: the
result shares no mutable object with the environment, the model or the infos, so
the training thread may keep stepping while the writer serializes it later. A value
that cannot be copied faithfully (a reference cycle, nesting deeper than
:data:`MAX_COPY_DEPTH`, a meta tensor, an object whose ``str()`` raises) becomes the
serializer's placeholder ``{"$unserializable": <type>, "repr": ..., "reason": ...}``
in place of that value only, counted by a :class:`ValueProblems`.
"""

from __future__ import annotations

import enum
import types
import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rtsave_async.formats.serialize import placeholder

_IMMUTABLE_SCALARS = frozenset({str, int, float, bool, type(None)})

#: Python and numpy real numbers (a plain tuple: no ABC lookup per ``isinstance``).
REAL_NUMBER_TYPES = (int, float, np.integer, np.floating)

#: Containers nested deeper than this are replaced by a placeholder (the copy recurses).
MAX_COPY_DEPTH = 100

#: Problem kinds of :func:`plain_copy` (the ``reason`` of the placeholder starts with one).
REFERENCE_CYCLE = "reference cycle"
TOO_DEEP = f"nested deeper than {MAX_COPY_DEPTH}"
NOT_READABLE = "not readable"


class ValueProblems:
    """Counts the values the training thread replaced by a placeholder or null, by kind.

    The first problem of each kind gives one warning; later ones are only counted
    (:attr:`counts`), so an env that reports a bad value every step warns once.

    :param warn: warn at the first problem of each kind; default True. False keeps the
        first message of each kind in :attr:`first_messages` instead (a SubprocVecEnv
        worker, whose problems the training process reports)
    """

    def __init__(self, warn: bool = True):
        self.warn = warn
        #: Problem kind -> how many values had it.
        self.counts: dict[str, int] = {}
        #: Problem kind -> the message of its first occurrence.
        self.first_messages: dict[str, str] = {}

    def report(self, kind: str, message: str, count: int = 1) -> None:
        """Count ``count`` problems of ``kind``; warn with ``message`` if it is the first of its kind."""
        if kind in self.counts:
            self.counts[kind] += count
            return
        self.counts[kind] = count
        self.first_messages[kind] = message
        if self.warn:
            warnings.warn(f"RealTimeSavingCallback: {message}; saved as a {{\"$unserializable\": ...}} placeholder "
                          f"or null, training goes on (later ones are counted, not warned)", stacklevel=2)

    def merge(self, counts: Mapping[str, int], first_messages: Mapping[str, str]) -> None:
        """Add the problems another :class:`ValueProblems` counted (e.g. in a worker process)."""
        for kind, count in counts.items():
            self.report(kind, first_messages.get(kind, kind), count)

    def placeholder(self, value: Any, kind: str, detail: str | None = None) -> dict[str, str]:
        """Count one problem of ``kind`` with ``value`` and return the placeholder that stands for it."""
        reason = f"{kind}: {detail}" if detail else kind
        self.report(kind, f"{reason} (a {type(value).__name__})")
        return placeholder(value, reason)


def plain_copy(value: Any, problems: ValueProblems | None = None) -> Any:
    """Deep copy of ``value`` made only of ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``.

    numpy arrays and scalars (and anything else with ``tolist()``, e.g. torch
    tensors) become Python lists/numbers, tuples become lists, mapping keys become
    strings, and any other object becomes its ``str()``. Never raises: what cannot be
    copied (cycles, nesting deeper than :data:`MAX_COPY_DEPTH`, a ``tolist()`` or
    ``str()`` that raises) becomes a placeholder, counted in ``problems`` if given.
    """
    if type(value) in _IMMUTABLE_SCALARS:  # most attributes an env is read for: nothing to walk
        return value
    return _copy(value, problems if problems is not None else ValueProblems(warn=False), set(), 0)


def _copy(value: Any, problems: ValueProblems, active: set[int], depth: int) -> Any:
    value_type = type(value)
    if value_type in _IMMUTABLE_SCALARS:
        return value
    # A plain list is no Mapping: skipping the ABC check halves the cost of copying small lists.
    is_mapping = value_type is dict or value_type is not list and isinstance(value, Mapping)
    if is_mapping or value_type is list or isinstance(value, (list, tuple)):
        if id(value) in active:
            return problems.placeholder(value, REFERENCE_CYCLE)
        if depth >= MAX_COPY_DEPTH:
            return problems.placeholder(value, TOO_DEEP)
        active.add(id(value))
        try:
            # Scalars inside containers are kept inline: no call per number in the common case.
            if is_mapping:
                return {
                    key if type(key) is str else str(key):
                        item if type(item) in _IMMUTABLE_SCALARS else _copy(item, problems, active, depth + 1)
                    for key, item in value.items()
                }
            return [item if type(item) in _IMMUTABLE_SCALARS else _copy(item, problems, active, depth + 1)
                    for item in value]
        except Exception as exc:  # a mapping whose items() or a key whose str() raises
            return _unreadable(value, exc, problems)
        finally:
            active.discard(id(value))
    try:
        return _copy_leaf(value, problems, active, depth)
    except Exception as exc:  # a meta tensor's tolist(), a raising __str__
        return _unreadable(value, exc, problems)


def _unreadable(value: Any, exc: Exception, problems: ValueProblems) -> dict[str, str]:
    """Placeholder for a value whose conversion raised ``exc``; one problem kind per type."""
    return problems.placeholder(value, f"{type(value).__qualname__} {NOT_READABLE}", repr(exc)[:200])


def _copy_leaf(value: Any, problems: ValueProblems, active: set[int], depth: int) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind == "O":  # the objects inside may be anything
            return _copy(value.tolist(), problems, active, depth)
        return value.tolist()
    if isinstance(value, enum.Enum):
        return _copy(value.value, problems, active, depth)
    for builtin_type in (str, int, float):  # subclasses such as np.float64 or a str-based key type
        if isinstance(value, builtin_type):
            return builtin_type(value)
    if callable(getattr(value, "tolist", None)):
        return _copy(value.tolist(), problems, active, depth)
    return str(value)


def qualified_name(obj: type | types.FunctionType) -> str:
    """``module.QualName`` of a class or function, e.g. ``torch.nn.modules.activation.ReLU``."""
    return f"{obj.__module__}.{obj.__qualname__}"


def describe_space(space: gym.Space) -> dict[str, Any]:
    """JSON description of a Gymnasium space: ``type``, ``shape``, ``dtype`` and ``repr``.

    ``Discrete`` adds ``n``; ``Dict``/``Tuple`` spaces describe their sub-spaces
    under ``spaces``.
    """
    description: dict[str, Any] = {
        "type": type(space).__name__,
        "shape": list(space.shape) if space.shape is not None else None,
        "dtype": str(space.dtype) if space.dtype is not None else None,
        "repr": str(space),
    }
    if isinstance(space, gym.spaces.Discrete):
        description["n"] = int(space.n)
    elif isinstance(space, gym.spaces.Dict):
        description["spaces"] = {key: describe_space(sub) for key, sub in space.spaces.items()}
    elif isinstance(space, gym.spaces.Tuple):
        description["spaces"] = [describe_space(sub) for sub in space.spaces]
    return description
