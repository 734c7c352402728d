"""Checkpoint capture on the training thread: a consistent in-memory copy, no disk.

The copy holds what ``BaseAlgorithm.save`` would write (state dicts cloned, mutable
attributes deep-copied), the filled part of the replay buffer, VecNormalize
statistics and settings, the RNG states (python, numpy, torch), the SB3 ``Monitor``
episode states and the envs' own state when they implement
``get_env_state()``/``set_env_state(state)``. Everything but the model is copied into
the pickle-free state format (:mod:`rtsave_async.checkpoints.state_format`); turning
it into files is the writer's job (:mod:`rtsave_async.checkpoints.format`).
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch as th
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.her import HerReplayBuffer

from rtsave_async.checkpoints.format import (
    GET_ENV_STATE,
    MONITOR_ATTRIBUTES,
    VEC_NORMALIZE_SETTINGS,
    ModelCopy,
    ReplayBufferCopy,
    encode_model,
    encode_replay_buffer,
)
from rtsave_async.checkpoints.state_format import UnsafeStateError, prepare_npz, to_npz
from rtsave_async.collectors.hyperparameters import package_versions
from rtsave_async.names import MODEL_SUFFIX, REPLAY_BUFFER_SUFFIX, STATE_SUFFIX, VEC_NORMALIZE_SUFFIX
from rtsave_async.remote.urls import is_url

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

_TRANSITION_ARRAYS = ("actions", "rewards", "dones", "timeouts")
_HER_EPISODE_ARRAYS = ("ep_start", "ep_length")
_FROM_THE_ENVS = ("env_states", "monitor_states", "episode_info_buffers")  # the state's parts the envs provide


@dataclass
class CheckpointCapture:
    """A checkpoint ready to submit: attachment encoders and a metadata builder (one JSON object)."""

    timestep: int
    attachments: dict[str, Callable[[], bytes]]
    build_records: Callable[[dict[str, Any]], dict[str, Any]]


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
    """The filled transitions of an SB3 ``ReplayBuffer``, ``DictReplayBuffer`` or ``HerReplayBuffer``, copied.

    A ``HerReplayBuffer`` also keeps its episode bounds (``ep_start``, ``ep_length``,
    ``_current_ep_start``) and, with ``copy_info_dict=True``, its stored infos.
    """
    filled = buffer.buffer_size if buffer.full else buffer.pos
    her = isinstance(buffer, HerReplayBuffer)
    arrays = {name: getattr(buffer, name)[:filled].copy()
              for name in (*_TRANSITION_ARRAYS, *(_HER_EPISODE_ARRAYS if her else ()))}
    if her:
        arrays["_current_ep_start"] = buffer._current_ep_start.copy()
    # With optimize_memory_usage the last transition's next observation sits one slot on.
    shares_observations = getattr(buffer, "optimize_memory_usage", False) and not buffer.full
    _copy_observations(arrays, "observations", buffer.observations, min(filled + shares_observations, buffer.buffer_size))
    if getattr(buffer, "next_observations", None) is not None:
        _copy_observations(arrays, "next_observations", buffer.next_observations, filled)
    # The info dicts are not changed once stored: copying the references is enough here.
    infos = buffer.infos[:filled].copy() if her and buffer.copy_info_dict else None
    return ReplayBufferCopy(arrays, int(buffer.pos), bool(buffer.full), int(buffer.buffer_size), infos)


def rng_states() -> dict[str, Any]:
    """The global RNG states SB3 draws from: python, numpy and torch (CPU)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state()}


def env_states(venv: VecEnv) -> list[Any] | None:
    """Each env's ``get_env_state()`` (one batched call), or None if unsupported."""
    if not venv.has_attr(GET_ENV_STATE):
        return None
    return venv.env_method(GET_ENV_STATE)


def monitor_states(venv: VecEnv) -> list[dict[str, Any]] | None:
    """Each env's SB3 ``Monitor`` episode state, or None if some env has no Monitor.

    The episode in progress (``rewards``, ``needs_reset``, reset keywords) and the
    totals; ``elapsed`` (seconds since the Monitor started) replaces ``t_start`` so
    that the resumed Monitor's ``"t"`` goes on from where it was. Read through the
    VecEnv, so it works under DummyVecEnv and SubprocVecEnv alike.
    """
    if not all(venv.env_is_wrapped(Monitor)):
        return None
    values = {name: venv.get_attr(name) for name in MONITOR_ATTRIBUTES + ("t_start",)}
    now = time.time()
    return [
        {"rewards": values["rewards"][index], "needs_reset": values["needs_reset"][index],
         "current_reset_info": values["current_reset_info"][index], "total_steps": values["total_steps"][index],
         "episode_returns": np.array(values["episode_returns"][index], dtype=np.float64),
         "episode_lengths": np.array(values["episode_lengths"][index], dtype=np.int64),
         "episode_times": np.array(values["episode_times"][index], dtype=np.float64),
         "elapsed": now - values["t_start"][index]}
        for index in range(venv.num_envs)
    ]


def episode_info_buffers(model: BaseAlgorithm) -> dict[str, list[Any]] | None:
    """The model's recent-episode buffers behind SB3's ``rollout/ep_rew_mean`` (not in its zip)."""
    if model.ep_info_buffer is None:
        return None
    return {"ep_info_buffer": list(model.ep_info_buffer), "ep_success_buffer": list(model.ep_success_buffer)}


def vec_normalize_statistics(vec_normalize: VecNormalize) -> dict[str, Any]:
    """What ``VecNormalize`` needs to go on normalizing exactly: running statistics and settings."""
    obs_rms = getattr(vec_normalize, "obs_rms", None)  # absent with norm_obs=False
    if isinstance(obs_rms, dict):
        obs_statistics = {key: _running_statistics(rms) for key, rms in obs_rms.items()}
    else:
        obs_statistics = None if obs_rms is None else _running_statistics(obs_rms)
    return {
        "obs_rms": obs_statistics,
        "ret_rms": _running_statistics(vec_normalize.ret_rms),
        "returns": vec_normalize.returns,
        **{name: getattr(vec_normalize, name) for name in VEC_NORMALIZE_SETTINGS},
    }


def env_identity(venv: VecEnv | None) -> tuple[str | None, dict[str, Any]]:
    """The registered id of the envs and their plain keyword arguments (from ``env.spec``)."""
    spec = venv.get_attr("spec", indices=[0])[0] if venv is not None else None
    if spec is None:
        return None, {}
    plain = (str, int, float, bool, type(None))
    return spec.id, {key: value for key, value in (spec.kwargs or {}).items() if isinstance(value, plain)}


ResumeCommand = Callable[[str, int], "str | None"]


def capture_checkpoint(
    model: BaseAlgorithm,
    callback_state: dict[str, Any],
    resume_command: ResumeCommand,
    save_replay_buffer: bool = True,
    total_timesteps: int | None = None,
) -> CheckpointCapture:
    """Copy ``model`` and its surroundings; encoders and metadata run later, elsewhere.

    :param callback_state: counters of the saving callback, restored on resume
    :param resume_command: (absolute model-zip path, checkpoint timestep) -> the
        command line that resumes from it, or None when no command can (the
        instructions then give the Python lines)
    :param save_replay_buffer: include the replay buffer of off-policy algorithms
    :param total_timesteps: the run's planned final timestep, for the instructions
    """
    timestep = int(model.num_timesteps)
    model_copy = copy_model(model)
    venv = model.get_env()
    vec_normalize = model.get_vec_normalize_env()
    replay_buffer = getattr(model, "replay_buffer", None) if save_replay_buffer else None
    buffer_copy = copy_replay_buffer(replay_buffer) if replay_buffer is not None else None
    state = {
        "rng": rng_states(),
        "env_states": env_states(venv) if venv is not None else None,
        "monitor_states": monitor_states(venv) if venv is not None else None,
        "episode_info_buffers": episode_info_buffers(model),
        "callback_state": callback_state,
    }
    # Copied now (under DummyVecEnv the env states are the envs' own objects), written later.
    state_entries = _prepare_state(state, timestep)
    attachments: dict[str, Callable[[], bytes]] = {
        MODEL_SUFFIX: lambda: encode_model(model_copy),
        STATE_SUFFIX: lambda: to_npz(state_entries),
    }
    if vec_normalize is not None:
        statistics = prepare_npz(vec_normalize_statistics(vec_normalize), "vec_normalize")
        attachments[VEC_NORMALIZE_SUFFIX] = lambda: to_npz(statistics)
    if buffer_copy is not None:
        attachments[REPLAY_BUFFER_SUFFIX] = lambda: encode_replay_buffer(buffer_copy)
    exact = state["env_states"] is not None
    env_name, env_kwargs = env_identity(venv)
    metadata = {
        "timestep": timestep,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "algorithm": type(model).__name__,
        "policy_class": type(model.policy).__name__,
        "num_envs": model.n_envs,
        "env_name": env_name,  # the Gymnasium id (episode records' env_id is an env index)
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
        "callback_state": copy.deepcopy(callback_state),
        "versions": package_versions(),
    }

    def build_records(files: dict[str, Any]) -> dict[str, Any]:
        model_path = files[MODEL_SUFFIX.lstrip(".")]["path"]
        model_path = model_path if is_url(model_path) else str(Path(model_path).absolute())
        command = resume_command(model_path, timestep)
        recovery_info = {
            "can_resume": True,
            "resume_instructions": resume_instructions(metadata, model_path, total_timesteps, command is not None),
            "resume_command": command,
        }
        return {**metadata, "files": files, "model_path": model_path, "recovery_info": recovery_info}

    return CheckpointCapture(timestep, attachments, build_records)


def _prepare_state(state: dict[str, Any], timestep: int) -> dict[str, np.ndarray]:
    """The state file's entries; if what the envs gave cannot be stored, it is left out, with a warning."""
    try:
        return prepare_npz(state)
    except UnsafeStateError as exc:
        if all(state[name] is None for name in _FROM_THE_ENVS):
            raise
        warnings.warn(f"checkpoint at timestep {timestep} keeps no env states, Monitor states or recent episodes "
                      f"(a resumed run resets the envs): {exc}", stacklevel=3)
        state.update(dict.fromkeys(_FROM_THE_ENVS))
        return prepare_npz(state)


def _running_statistics(rms: RunningMeanStd) -> dict[str, Any]:
    return {"mean": rms.mean, "var": rms.var, "count": rms.count}


def resume_instructions(metadata: dict[str, Any], model_path: str, total_timesteps: int | None,
                        has_command: bool) -> str:
    """What resuming from this checkpoint restores, and how to do it from Python.

    ``model_path`` is absolute; the checkpoint's files are found beside its JSON, so
    a moved run folder resumes from its new place too.
    """
    contents, timestep, num_envs = metadata["contents"], metadata["timestep"], metadata["num_envs"]
    parts = [f"the model parameters and optimizer states (num_timesteps continues from {timestep})"]
    if contents["vec_normalize"]:
        parts.append("the VecNormalize statistics")
    if contents["replay_buffer"] is not None:
        parts.append(f"the replay buffer ({contents['replay_buffer']['transitions']} transitions; with another "
                     "number of envs they are regrouped and the newest that fit are kept)")
    parts.append("the RNG states (python, numpy, torch)")
    if contents["env_states"]:
        parts.append(f"the states of the {num_envs} envs when resumed with {num_envs} envs "
                     "(with another number the envs start from a reset)")
    parts.append(f"the saving callback's episode and success counters when resumed with {num_envs} envs "
                 "(callback.restore_state)")
    text = "Resuming restores " + "; ".join(parts) + "."
    if not contents["env_states"]:
        text += " The envs start from a reset (they do not implement get_env_state)."
    planned = total_timesteps is not None and total_timesteps > timestep
    remaining = f"{total_timesteps} - resumed.model.num_timesteps" if planned else "additional_timesteps"
    how = ("Run resume_command, or resume from Python" if has_command else
           "This run was not started by the rtsave command line: resume it from your own script")
    return (f"{text} {how}, with env built as for the original run:\n"
            f"from rtsave_async.checkpoints import load_checkpoint\n"
            f"resumed = load_checkpoint({model_path!r}, env)\n"
            f"callback.restore_state(resumed.callback_state)\n"
            f"resumed.model.learn({remaining}, callback=callback, reset_num_timesteps=False)")


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
