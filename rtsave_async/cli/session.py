"""What every heavy ``rtsave`` command starts with: torch threads, the checkpoint, the VecEnv."""

from __future__ import annotations

import functools
from typing import Any

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from rtsave_async.checkpoints import CheckpointError, CheckpointInfo, find_checkpoint
from rtsave_async.cli.environments import make_env
from rtsave_async.cli.errors import CliError
from rtsave_async.collectors import ReadingsInStepInfo

VEC_ENV_CLASSES = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}


def set_torch_threads(threads: int) -> int:
    """Set torch's intra-op threads (``--torch_threads``; small MLPs are fastest on one); returns the count in use."""
    th.set_num_threads(threads)
    return th.get_num_threads()


def verified_checkpoint(model_path: str | None) -> CheckpointInfo | None:
    """The checkpoint at ``model_path``, every file verified once (None without a path)."""
    if model_path is None:
        return None
    try:
        return find_checkpoint(model_path)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


def build_vec_env(env_id: str, env_kwargs: dict[str, Any], num_envs: int, seed: int, vec: str = "dummy") -> VecEnv:
    """The VecEnv of ``env_id``; in worker processes each env reads what a save needs
    itself (:class:`ReadingsInStepInfo`: no round trip per save, idle without a callback)."""
    return make_vec_env(functools.partial(make_env, env_id, **env_kwargs), n_envs=num_envs, seed=seed,
                        vec_env_cls=VEC_ENV_CLASSES[vec],
                        wrapper_class=ReadingsInStepInfo if VEC_ENV_CLASSES[vec] is SubprocVecEnv else None)
