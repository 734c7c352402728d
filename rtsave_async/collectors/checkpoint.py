"""Checkpoint capture on the training thread: a consistent in-memory copy, no disk.

The copy holds what ``BaseAlgorithm.save`` would write (state dicts cloned, mutable
attributes deep-copied), the filled part of the replay buffer, VecNormalize
statistics, the RNG states (python, numpy, torch) and the envs' own state when they
implement ``get_env_state()``/``set_env_state(state)``. Turning it into files is the
writer's job (:mod:`rtsave_async.checkpoints.format`).
"""

from __future__ import annotations

import copy
import pickle
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch as th
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv

from rtsave_async.checkpoints.format import (
    ModelCopy,
    ReplayBufferCopy,
    encode_model,
    encode_pickle,
    encode_replay_buffer,
)
from rtsave_async.collectors.hyperparameters import package_versions
from rtsave_async.names import MODEL_SUFFIX, REPLAY_BUFFER_SUFFIX, STATE_SUFFIX, VEC_NORMALIZE_SUFFIX

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

GET_ENV_STATE = "get_env_state"
SET_ENV_STATE = "set_env_state"


@dataclass
class CheckpointCapture:
    """A checkpoint ready to submit: attachment encoders and a metadata builder."""

    timestep: int
    attachments: dict[str, Callable[[], bytes]]
    build_records: Callable[[dict[str, Any]], list[dict[str, Any]]]


def copy_model(model: BaseAlgorithm) -> ModelCopy:
    """Everything ``model.save`` writes, with tensors cloned and mutable values copied."""
    data = model.__dict__.copy()
    state_dict_names, torch_variable_names = model._get_torch_save_params()
    excluded = set(model._excluded_save_params())
    excluded.update(name.split(".")[0] for name in state_dict_names + torch_variable_names)
    for name in excluded:
        data.pop(name, None)
    data = {name: _deep_copy(value) for name, value in data.items()}
    params = {name: copy.deepcopy(state) for name, state in model.get_parameters().items()}
    pytorch_variables = {name: _clone_variable(model, name) for name in torch_variable_names}
    return ModelCopy(data, params, pytorch_variables)


def copy_replay_buffer(buffer: Any) -> ReplayBufferCopy:
    """The filled transitions of an SB3 ``ReplayBuffer``/``DictReplayBuffer``, copied."""
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:filled].copy() for name in ("actions", "rewards", "dones", "timeouts")}
    # With optimize_memory_usage the last transition's next observation sits one slot on.
    shares_observations = getattr(buffer, "optimize_memory_usage", False) and not buffer.full
    _copy_observations(arrays, "observations", buffer.observations, min(filled + shares_observations, buffer.buffer_size))
    if getattr(buffer, "next_observations", None) is not None:
        _copy_observations(arrays, "next_observations", buffer.next_observations, filled)
    return ReplayBufferCopy(arrays, int(buffer.pos), bool(buffer.full), int(buffer.buffer_size))


def rng_states() -> dict[str, Any]:
    """The global RNG states SB3 draws from: python, numpy and torch (CPU)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state()}


def env_states(venv: VecEnv) -> list[Any] | None:
    """Each env's ``get_env_state()`` (one batched call), or None if unsupported."""
    if not venv.has_attr(GET_ENV_STATE):
        return None
    return venv.env_method(GET_ENV_STATE)


def env_identity(venv: VecEnv | None) -> tuple[str | None, dict[str, Any]]:
    """The registered id of the envs and their plain keyword arguments (from ``env.spec``)."""
    spec = venv.get_attr("spec", indices=[0])[0] if venv is not None else None
    if spec is None:
        return None, {}
    plain = (str, int, float, bool, type(None))
    return spec.id, {key: value for key, value in (spec.kwargs or {}).items() if isinstance(value, plain)}


def capture_checkpoint(
    model: BaseAlgorithm,
    callback_state: dict[str, Any],
    resume_command: Callable[[str], str],
    save_replay_buffer: bool = True,
) -> CheckpointCapture:
    """Copy ``model`` and its surroundings; encoders and metadata run later, elsewhere.

    :param callback_state: counters of the saving callback, restored on resume
    :param resume_command: model-zip path -> the command line that resumes from it
    :param save_replay_buffer: include the replay buffer of off-policy algorithms
    """
    timestep = int(model.num_timesteps)
    model_copy = copy_model(model)
    venv = model.get_env()
    vec_normalize = model.get_vec_normalize_env()
    replay_buffer = getattr(model, "replay_buffer", None) if save_replay_buffer else None
    buffer_copy = copy_replay_buffer(replay_buffer) if replay_buffer is not None else None
    state = {
        "rng": rng_states(),
        # Copied now: under DummyVecEnv these are the envs' own objects, pickled later on the writer thread.
        "env_states": copy.deepcopy(env_states(venv)) if venv is not None else None,
        "vec_normalize_returns": None if vec_normalize is None else vec_normalize.returns.copy(),
        "callback_state": copy.deepcopy(callback_state),
    }
    attachments: dict[str, Callable[[], bytes]] = {
        MODEL_SUFFIX: lambda: encode_model(model_copy),
        STATE_SUFFIX: lambda: encode_pickle(state),
    }
    if vec_normalize is not None:
        # VecNormalize pickles without its venv; its statistics are small.
        statistics = pickle.dumps(vec_normalize, protocol=pickle.HIGHEST_PROTOCOL)
        attachments[VEC_NORMALIZE_SUFFIX] = lambda: statistics
    if buffer_copy is not None:
        attachments[REPLAY_BUFFER_SUFFIX] = lambda: encode_replay_buffer(buffer_copy)
    exact = state["env_states"] is not None
    env_id, env_kwargs = env_identity(venv)
    metadata = {
        "timestep": timestep,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "algorithm": type(model).__name__,
        "policy_class": type(model.policy).__name__,
        "num_envs": model.n_envs,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "device": str(get_device(model.device)),
        "contents": {
            "model": True,
            "vec_normalize": vec_normalize is not None,
            "replay_buffer": None if buffer_copy is None else {
                "transitions": int(buffer_copy.arrays["actions"].shape[0] * buffer_copy.arrays["actions"].shape[1]),
                "pos": buffer_copy.pos, "full": buffer_copy.full, "raw_bytes": buffer_copy.raw_bytes,
            },
            "env_states": exact,
            "rng_states": True,
        },
        "callback_state": state["callback_state"],
        "versions": package_versions(),
    }

    def build_records(files: dict[str, Any]) -> list[dict[str, Any]]:
        model_path = files[MODEL_SUFFIX.lstrip(".")]["path"]
        continuation = ("the run continues exactly where it stopped (env, RNG and buffer states restored)" if exact
                        else "envs are reset at resume (they do not implement get_env_state)")
        recovery_info = {
            "can_resume": True,
            "resume_instructions": (
                f"Resume with rtsave_async.checkpoints.load_checkpoint('{model_path}', env) or the command "
                f"below; num_timesteps continues from {timestep}; {continuation}."
            ),
            "resume_command": resume_command(model_path),
        }
        return [{**metadata, "files": files, "model_path": model_path, "recovery_info": recovery_info}]

    return CheckpointCapture(timestep, attachments, build_records)


def _deep_copy(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is saved as it is, as SB3 would
        return value


def _clone_variable(model: BaseAlgorithm, name: str) -> Any:
    value = model
    for part in name.split("."):
        value = getattr(value, part)
    return value.detach().clone() if isinstance(value, th.Tensor) else value


def _copy_observations(arrays: dict[str, np.ndarray], name: str, observations: Any, slots: int) -> None:
    if isinstance(observations, dict):
        for key, array in observations.items():
            arrays[f"{name}/{key}"] = array[:slots].copy()
    else:
        arrays[name] = observations[:slots].copy()
