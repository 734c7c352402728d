"""The ``hyperparameters`` record, gathered once when training starts.

It describes everything needed to reproduce a run: the algorithm and its
hyper-parameters, the policy architecture, the environment, the seed, the
command line, package versions, the git revision and the host.
"""

from __future__ import annotations

import enum
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch as th

from rtsave_async.collectors.values import REAL_NUMBER_TYPES, describe_space, plain_copy, qualified_name

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

#: Distributions whose versions are recorded (``None`` when not installed).
VERSIONED_PACKAGES = (
    "stable_baselines3",
    "torch",
    "gymnasium",
    "mujoco",
    "numpy",
    "rtsave_async",
)

#: Public model attributes that are training state rather than configuration.
RUNTIME_STATE_ATTRIBUTES = frozenset({"num_timesteps", "start_time"})

#: SB3's ``progress_remaining`` at the start and at the end of training.
PROGRESS_AT_START = 1.0
PROGRESS_AT_END = 0.0

_GIT_TIMEOUT_S = 5.0


def config_value(value: Any) -> Any:
    """JSON form of one configuration value, or ``NotImplemented`` for runtime objects.

    Scalars and enums become plain values, classes their qualified name, named
    tuples (e.g. ``TrainFreq``) and dicts/lists are converted item by item (unknown
    items as ``str``). A schedule (any callable of ``progress_remaining`` giving a
    number, e.g. SB3's ``FloatSchedule`` or rl_zoo3's ``lin_0.001``) becomes its value
    when it is constant, else :func:`schedule_description`. Other functions give their
    qualified name. Buffers, networks, envs, tensors and other live objects give
    ``NotImplemented``.
    """
    if value is None or isinstance(value, (bool, int, float, str, enum.Enum)):
        return plain_copy(value)
    if isinstance(value, type):
        return qualified_name(value)
    if callable(value) and not isinstance(value, th.nn.Module):
        schedule = schedule_description(value)
        if schedule is not None:
            return schedule["value_at_start"] if schedule["value_at_start"] == schedule["value_at_end"] else schedule
        if isinstance(value, types.FunctionType):
            return qualified_name(value)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return config_value(value._asdict())
    if isinstance(value, Mapping):
        return {str(key): _config_value_or_str(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_config_value_or_str(item) for item in value]
    if isinstance(value, th.device):
        return str(value)
    return NotImplemented


def schedule_description(schedule: Callable[[float], Any]) -> dict[str, Any] | None:
    """``{"schedule": repr, "value_at_start": f(1), "value_at_end": f(0)}``, or None when
    ``schedule`` is not a function of ``progress_remaining`` returning a number."""
    try:
        start, end = schedule(PROGRESS_AT_START), schedule(PROGRESS_AT_END)
    except Exception:  # not a schedule: it takes other arguments, or fails on these
        return None
    if not all(isinstance(item, REAL_NUMBER_TYPES) and not isinstance(item, bool)
               for item in (start, end)):
        return None
    return {"schedule": repr(schedule), "value_at_start": float(start), "value_at_end": float(end)}


def _config_value_or_str(value: Any) -> Any:
    converted = config_value(value)
    return str(value) if converted is NotImplemented else converted


def algorithm_hyperparameters(model: BaseAlgorithm) -> dict[str, Any]:
    """Every public configuration attribute of ``model`` (see :func:`config_value`)."""
    hyperparameters = {}
    for name, value in vars(model).items():
        if name.startswith("_") or name in RUNTIME_STATE_ATTRIBUTES:
            continue
        converted = config_value(value)
        if converted is not NotImplemented:
            hyperparameters[name] = converted
    return hyperparameters


def policy_architecture(model: BaseAlgorithm) -> dict[str, Any]:
    """``policy_kwargs``, ``net_arch``, parameter count and ``str(model.policy)``."""
    policy = model.policy
    return {
        "policy_kwargs": config_value(model.policy_kwargs or {}),
        "net_arch": plain_copy(getattr(policy, "net_arch", None)),
        "num_parameters": sum(parameter.numel() for parameter in policy.parameters()),
        "policy_repr": str(policy),
    }


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Python and :data:`VERSIONED_PACKAGES` versions (read once per process; treat as read-only).

    From the installed distribution's metadata, else the imported module's
    ``__version__`` (e.g. a source checkout on ``PYTHONPATH``), else ``None``.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = getattr(sys.modules.get(package), "__version__", None)
    return versions


def git_revision(directory: str | os.PathLike[str] | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``directory`` (default: cwd), or None if that fails."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def collect_hyperparameters(
    model: BaseAlgorithm,
    timestep: int,
    total_timesteps: int | None,
    environment_summary: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``hyperparameters`` record (one per training start).

    :param model: the SB3 model being trained
    :param timestep: ``model.num_timesteps`` at training start
    :param total_timesteps: the run's planned final timestep, if known
    :param environment_summary: the env summary (see ``EnvStateReader``), if available
    """
    environment = plain_copy(dict(environment_summary or {}))
    environment["num_envs"] = model.n_envs
    environment["observation_space"] = describe_space(model.observation_space)
    environment["action_space"] = describe_space(model.action_space)
    return {
        "timestep": timestep,
        "total_timesteps": total_timesteps,
        "model_type": type(model).__name__,
        "policy_type": type(model.policy).__name__,
        "algorithm_hyperparameters": algorithm_hyperparameters(model),
        "policy_architecture": policy_architecture(model),
        "environment": environment,
        "seed": model.seed,
        "command_line": list(sys.argv),
        "versions": package_versions(),
        "git_revision": None,  # filled on the writer thread: see with_git_revision
        "host": platform.node(),
    }


def with_git_revision(record: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A :meth:`SnapshotWriter.submit` payload writing ``record`` as one JSON object, with
    ``git_revision`` filled in when the writer thread writes it (``git`` runs a
    subprocess; the training thread does not wait for it)."""
    return lambda files: {**record, "git_revision": git_revision()}
