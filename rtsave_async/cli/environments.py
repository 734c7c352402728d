"""Envs for the command line: ids, Go1-only options, and which algorithms fit an env.

Needs gymnasium only (no torch or SB3), so a misfit is reported at once.
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from rtsave_async.cli.errors import CliError
from rtsave_async.envs import GO1_ENV_ID

GO1_ONLY_OPTIONS = ("ctrl_type", "biped", "rand_power")
_ON_POLICY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
#: The action spaces each SB3 algorithm accepts (SB3's ``supported_action_spaces``).
ALGORITHM_ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "a2c": _ON_POLICY_SPACES, "ppo": _ON_POLICY_SPACES, "dqn": (spaces.Discrete,),
    "sac": (spaces.Box,), "td3": (spaces.Box,), "ddpg": (spaces.Box,),
}
_MAKE_ERRORS = (gym.error.Error, TypeError, ValueError, ImportError)


def make_env(env_id: str, **env_kwargs: Any) -> gym.Env:
    """``gym.make`` that registers our envs first (also inside subprocess workers)."""
    import rtsave_async.envs  # noqa: F401  (registers rtsave/Go1-v0)

    return gym.make(env_id, **env_kwargs)


def recorded_env_name(metadata: dict[str, Any]) -> str | None:
    """The Gymnasium id a checkpoint's metadata records (``env_id`` in checkpoints written before ``env_name``)."""
    return metadata.get("env_name") or metadata.get("env_id")


def environment_options(args: argparse.Namespace, recorded: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The env id and kwargs: flags first, then what the checkpoint recorded, then defaults."""
    recorded_id = recorded_env_name(recorded)
    env_id = args.env or recorded_id or GO1_ENV_ID
    kwargs = dict(recorded.get("env_kwargs") or {}) if env_id == recorded_id else {}
    for option in GO1_ONLY_OPTIONS:
        value = getattr(args, option)
        if value is None:
            continue
        if env_id != GO1_ENV_ID:
            raise CliError(f"--{option} applies only to {GO1_ENV_ID}, not {env_id}")
        kwargs[option] = value
    return env_id, kwargs


def check_algorithm_fits(algo: str, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Make one env and check ``algo`` accepts its action space (one clear line otherwise)."""
    try:
        env = make_env(env_id, **env_kwargs)
    except _MAKE_ERRORS as exc:
        raise CliError(f"cannot make env {env_id!r}: {exc}") from None
    action_space = env.action_space
    env.close()
    if isinstance(action_space, ALGORITHM_ACTION_SPACES[algo]):
        return
    fitting = [name for name, accepted in ALGORITHM_ACTION_SPACES.items() if isinstance(action_space, accepted)]
    needs = " or ".join(space.__name__ for space in ALGORITHM_ACTION_SPACES[algo])
    raise CliError(f"--algo {algo} does not fit {env_id}: its action space is {action_space}, {algo} needs "
                   f"{needs} actions; algorithms that fit: {', '.join(fitting) or 'none of ours'}")
