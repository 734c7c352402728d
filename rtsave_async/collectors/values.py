"""Turning live training objects into detached, JSON-ready values.

Everything a collector hands to the writer goes through :func:`plain_copy`: the
result shares no mutable object with the environment, the model or the infos, so
the training thread may keep stepping while the writer serializes it later.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

_IMMUTABLE_SCALARS = frozenset({str, int, float, bool, type(None)})

#: Python and numpy real numbers (a plain tuple: no ABC lookup per ``isinstance``).
REAL_NUMBER_TYPES = (int, float, np.integer, np.floating)


def plain_copy(value: Any) -> Any:
    """Deep copy of ``value`` made only of ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``.

    numpy arrays and scalars (and anything else with ``tolist()``, e.g. torch
    tensors) become Python lists/numbers, tuples become lists, mapping keys become
    strings, and any other object becomes its ``str()``.
    """
    value_type = type(value)
    if value_type in _IMMUTABLE_SCALARS:
        return value
    # Scalars inside containers are kept inline: no call per number in the common case.
    if value_type is dict or isinstance(value, Mapping):
        return {
            key if type(key) is str else str(key): item if type(item) in _IMMUTABLE_SCALARS else plain_copy(item)
            for key, item in value.items()
        }
    if value_type is list or isinstance(value, (list, tuple)):
        return [item if type(item) in _IMMUTABLE_SCALARS else plain_copy(item) for item in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, enum.Enum):
        return plain_copy(value.value)
    for builtin_type in (str, int, float):  # subclasses such as np.float64 or a str-based key type
        if isinstance(value, builtin_type):
            return builtin_type(value)
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
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
