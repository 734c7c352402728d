"""Resume training from a checkpoint: model, buffers, statistics, RNG and env states.

``load_checkpoint(path, env)`` accepts a checkpoint's ``.zip`` or its ``.json``; it checks
every listed file (present, same size, same SHA-256) before loading anything, and
raises :class:`CheckpointError` naming the file when something is wrong. Continue with
``model.learn(remaining, reset_num_timesteps=False)``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rtsave_async.checkpoints.format import decode_replay_buffer, restore_replay_buffer
from rtsave_async.collectors.checkpoint import SET_ENV_STATE
from rtsave_async.names import JSON_SUFFIX, MODEL_SUFFIX, REPLAY_BUFFER_SUFFIX, STATE_SUFFIX, VEC_NORMALIZE_SUFFIX

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    name: getattr(stable_baselines3, name) for name in ("A2C", "DDPG", "DQN", "PPO", "SAC", "TD3")
}
_LOAD_ERRORS = (zipfile.BadZipFile, KeyError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError,
                AssertionError, TypeError, AttributeError)


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed; the message names the file and the reason."""


@dataclass
class CheckpointInfo:
    """A checkpoint on disk: its metadata (None for a bare SB3 zip) and its files."""

    model_path: Path
    metadata: dict[str, Any] | None

    def attachment(self, suffix: str) -> Path | None:
        """The path of the attachment with ``suffix`` if the checkpoint has one."""
        if self.metadata is None:
            return None
        entry = self.metadata.get("files", {}).get(suffix.lstrip("."))
        return self.model_path.with_name(entry["name"]) if entry else None


@dataclass
class ResumedRun:
    """What :func:`load_checkpoint` restored."""

    model: BaseAlgorithm
    info: CheckpointInfo
    callback_state: dict[str, Any] | None
    exact: bool  # env states restored (same number of envs, set_env_state): continues where it stopped


def find_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read and verify the checkpoint at ``path`` (its ``.zip`` or ``.json``).

    A ``.zip`` without a JSON beside it is accepted as a bare SB3 model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    stem = path.name.split(".", 1)[0]
    json_path = path if path.suffix == JSON_SUFFIX else path.with_name(stem + JSON_SUFFIX)
    if not json_path.is_file():
        if path.suffix != MODEL_SUFFIX:
            raise CheckpointError(f"{path}: expected a checkpoint .zip or .json")
        return CheckpointInfo(path, None)
    try:
        metadata = json.loads(json_path.read_bytes())[0]
        can_resume = metadata["recovery_info"]["can_resume"]
        files = metadata["files"]
        entries = [(json_path.with_name(entry["name"]), entry["bytes"], entry["sha256"]) for entry in files.values()]
        model_name = files[MODEL_SUFFIX.lstrip(".")]["name"]
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{json_path}: not a checkpoint metadata file ({exc!r})") from exc
    if not can_resume:
        raise CheckpointError(f"{json_path}: marked as not resumable")
    for file_path, size, sha256 in entries:
        _verify_file(file_path, size, sha256)
    return CheckpointInfo(json_path.with_name(model_name), metadata)


def load_checkpoint(
    path: str | Path | CheckpointInfo,
    env: VecEnv | None = None,
    *,
    algorithm: str | type[BaseAlgorithm] | None = None,
    device: str = "auto",
    restore_rng: bool = True,
) -> ResumedRun:
    """Load the model and everything saved with it.

    :param path: the checkpoint's ``.zip`` or ``.json``, or what :func:`find_checkpoint`
        returned for it (its files are then not hashed again)
    :param env: the VecEnv to continue on, built like the original; when the
        checkpoint holds VecNormalize statistics they replace those of a
        ``VecNormalize`` passed in (or are wrapped around a plain VecEnv); None for
        prediction only
    :param algorithm: expected algorithm (name or class); default: the one recorded
    :param device: torch device for the model; default ``"auto"``
    :param restore_rng: restore the python, numpy and torch RNG states; default True
    :return: the model (``num_timesteps`` as saved) with the callback's counters and
        whether the envs continue exactly where they stopped
    :raises CheckpointError: naming the file, when a file is missing, corrupted or
        holds something else than recorded
    """
    info = path if isinstance(path, CheckpointInfo) else find_checkpoint(path)
    algorithm_class = _algorithm_class(info, algorithm)
    state = _read_pickle(info.attachment(STATE_SUFFIX)) or {}
    vec_normalize_path = info.attachment(VEC_NORMALIZE_SUFFIX)
    if env is not None and vec_normalize_path is not None:
        env = _wrap_vec_normalize(vec_normalize_path, env, state.get("vec_normalize_returns"))
    env_states = state.get("env_states")
    exact = (env is not None and env_states is not None and len(env_states) == env.num_envs
             and env.has_attr(SET_ENV_STATE))
    try:
        model = algorithm_class.load(info.model_path, env=env, device=device, force_reset=not exact)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(
            f"{info.model_path}: cannot be loaded as a {algorithm_class.__name__} model ({type(exc).__name__}: {exc})"
        ) from exc
    buffer_path = info.attachment(REPLAY_BUFFER_SUFFIX)
    if buffer_path is not None and getattr(model, "replay_buffer", None) is not None:
        try:
            restore_replay_buffer(model.replay_buffer, decode_replay_buffer(buffer_path.read_bytes()))
        except (ValueError, KeyError, OSError) as exc:
            raise CheckpointError(f"{buffer_path}: cannot restore the replay buffer ({exc})") from exc
    if exact:
        _restore_env_states(env, env_states)
    if restore_rng and "rng" in state:
        _restore_rng(state["rng"])
    return ResumedRun(model, info, state.get("callback_state"), exact)


def _algorithm_class(info: CheckpointInfo, expected: str | type[BaseAlgorithm] | None) -> type[BaseAlgorithm]:
    recorded = (info.metadata or {}).get("algorithm")
    expected = expected if expected is not None else recorded
    if expected is None:
        raise CheckpointError(f"{info.model_path}: the algorithm is not recorded; pass it explicitly")
    expected_name = expected if isinstance(expected, str) else expected.__name__
    if recorded is not None and recorded.upper() != expected_name.upper():
        raise CheckpointError(f"{info.model_path}: saved by {recorded}, cannot be resumed as {expected_name}")
    if isinstance(expected, type):
        return expected
    if expected_name.upper() not in ALGORITHMS:
        raise CheckpointError(f"{info.model_path}: unknown algorithm {expected_name!r}; use one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[expected_name.upper()]


def _verify_file(path: Path, recorded_size: int, recorded_sha256: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (the checkpoint is incomplete)")
    try:
        size = path.stat().st_size
        if size != recorded_size:
            raise CheckpointError(f"{path}: {size} bytes, the checkpoint recorded {recorded_size} (corrupted)")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if digest.hexdigest() != recorded_sha256:
        raise CheckpointError(f"{path}: SHA-256 differs from the one recorded (corrupted)")


def _read_pickle(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _wrap_vec_normalize(path: Path, env: VecEnv, returns: np.ndarray | None) -> VecNormalize:
    vec_normalize = _read_pickle(path)
    if not isinstance(vec_normalize, VecNormalize):
        raise CheckpointError(f"{path}: does not hold VecNormalize statistics")
    vec_normalize.set_venv(env.venv if isinstance(env, VecNormalize) else env)
    if returns is not None:
        vec_normalize.returns = returns
    return vec_normalize


def _restore_env_states(env: VecEnv, states: list[Any]) -> None:
    """Reset the innermost VecEnv (so wrappers' statistics stay as saved), then set states."""
    env.unwrapped.reset()
    for index, state in enumerate(states):
        env.env_method(SET_ENV_STATE, state, indices=[index])


def _restore_rng(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    th.set_rng_state(states["torch"])


__all__ = ["ALGORITHMS", "CheckpointError", "CheckpointInfo", "ResumedRun", "find_checkpoint", "load_checkpoint"]
