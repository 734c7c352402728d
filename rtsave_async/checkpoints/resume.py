"""Resume training from a checkpoint: model, buffers, statistics, RNG and env states.

``load_checkpoint(path, env)`` accepts a checkpoint's ``.zip`` or its ``.json``; it checks
every listed file (present, same size, same SHA-256) before loading anything, and
raises :class:`CheckpointError` naming the file when something is wrong. Our own files
are read without pickle; the pickled state files of older checkpoints only with
``allow_pickle=True``. Continue with ``model.learn(remaining, reset_num_timesteps=False)``.
``ResumedRun.restored`` and ``ResumedRun.not_restored`` say what came back and what did
not, and why.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import time
import warnings
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.her import HerReplayBuffer

from rtsave_async.checkpoints.format import (
    MONITOR_ATTRIBUTES,
    SET_ENV_STATE,
    VEC_NORMALIZE_SETTINGS,
    ReplayBufferCopy,
    decode_replay_buffer,
    read_checkpoint_metadata,
    restore_replay_buffer,
)
from rtsave_async.checkpoints.remote import RemoteCheckpointError, fetch_checkpoint
from rtsave_async.checkpoints.state_format import decode_npz
from rtsave_async.names import (
    JSON_SUFFIX,
    MODEL_SUFFIX,
    PICKLED_STATE_SUFFIX,
    PICKLED_VEC_NORMALIZE_SUFFIX,
    REPLAY_BUFFER_SUFFIX,
    STATE_SUFFIX,
    VEC_NORMALIZE_SUFFIX,
)
from rtsave_async.remote.urls import is_url

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
    """What :func:`load_checkpoint` restored.

    ``restored`` and ``not_restored`` name each part in words (``not_restored``
    with the reason), e.g. ``"env states (the checkpoint has 2 envs, this run 4: envs
    start from a reset)"``; :meth:`describe` joins them into one line.
    """

    model: BaseAlgorithm
    info: CheckpointInfo
    callback_state: dict[str, Any] | None
    exact: bool  # env states restored (same number of envs, set_env_state): continues where it stopped
    restored: list[str] = field(default_factory=list)
    not_restored: list[str] = field(default_factory=list)
    #: Each env's ``get_env_state()`` as saved (None when the envs did not give one), restored or not.
    env_states: list[Any] | None = None

    def describe(self) -> str:
        """``"restored: a, b; not restored: c (why)"`` in one line."""
        text = "restored: " + ", ".join(self.restored)
        return text + ("; not restored: " + ", ".join(self.not_restored) if self.not_restored else "")


def find_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read and verify the checkpoint at ``path`` (its ``.zip`` or ``.json``).

    A ``.zip`` without a JSON beside it is accepted as a bare SB3 model. A URL
    (``s3://bucket/run/checkpoints/checkpoint_....json``) is fetched into a local
    cache first (:mod:`rtsave_async.checkpoints.remote`).
    """
    if is_url(path):
        try:
            path = fetch_checkpoint(str(path))
        except RemoteCheckpointError as exc:
            raise CheckpointError(str(exc)) from None
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
        metadata = read_checkpoint_metadata(json_path)
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
    allow_pickle: bool = False,
    for_prediction: bool = False,
) -> ResumedRun:
    """Load the model and everything saved with it.

    :param path: the checkpoint's ``.zip`` or ``.json`` (a path, or a URL such as
        ``s3://bucket/run/checkpoints/checkpoint_....json``), or what :func:`find_checkpoint`
        returned for it (its files are then not hashed again)
    :param env: the VecEnv to continue on, built like the original (any number of
        envs); when the checkpoint holds VecNormalize statistics they replace those of
        a ``VecNormalize`` passed in (or are wrapped around a plain VecEnv); None for
        prediction only
    :param algorithm: expected algorithm (name or class); default: the one recorded
    :param device: torch device for the model; default ``"auto"``
    :param restore_rng: restore the python, numpy and torch RNG states; default True
    :param allow_pickle: also load the pickled state files of checkpoints written by
        older versions (``.state.pkl``, ``.vecnormalize.pkl``); unpickling runs any
        code the file holds, so only for checkpoints you trust. Default False: such a
        checkpoint raises :class:`CheckpointError`
    :param for_prediction: load what acting needs only: the policy and the
        VecNormalize statistics (frozen: no update, rewards not normalized); never
        the replay buffer, env states or RNG states; default False
    :return: the model (``num_timesteps`` as saved) with the callback's counters,
        whether the envs continue exactly where they stopped, and what was restored.
        With another number of envs than saved, the envs start from a reset and an
        off-policy replay buffer is regrouped for the new number of envs (the newest
        transitions that fit are kept)
    :raises CheckpointError: naming the file, when a file is missing, corrupted or
        holds something else than recorded
    """
    info = path if isinstance(path, CheckpointInfo) else find_checkpoint(path)
    algorithm_class = _algorithm_class(info, algorithm)
    state = _read_state(info, STATE_SUFFIX, PICKLED_STATE_SUFFIX, allow_pickle) or {}
    if not isinstance(state, dict):
        raise CheckpointError(f"{_state_path(info)}: does not hold a checkpoint state (a {type(state).__name__})")
    restored, not_restored = [], []
    if env is not None:
        has_statistics = info.attachment(VEC_NORMALIZE_SUFFIX) or info.attachment(PICKLED_VEC_NORMALIZE_SUFFIX)
        env = _with_vec_normalize(info, env, state.get("vec_normalize_returns"), allow_pickle)
        if has_statistics:
            if for_prediction:
                env.training, env.norm_reward = False, False
            restored.append("VecNormalize statistics")
    env_states = state.get("env_states")
    exact = (not for_prediction and env is not None and env_states is not None
             and len(env_states) == env.num_envs and env.has_attr(SET_ENV_STATE))
    # Acting never samples the replay buffer: a one-slot buffer instead of allocating the recorded size.
    small_buffer = {"buffer_size": 1} if for_prediction and issubclass(algorithm_class, OffPolicyAlgorithm) else {}
    try:
        model = algorithm_class.load(info.model_path, env=env, device=device, force_reset=not exact, **small_buffer)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(
            f"{info.model_path}: cannot be loaded as a {algorithm_class.__name__} model ({type(exc).__name__}: {exc})"
        ) from exc
    parameters = "policy parameters" if for_prediction else "model parameters and optimizer states"
    restored.insert(0, f"{parameters} at timestep {model.num_timesteps}")
    buffer_path = info.attachment(REPLAY_BUFFER_SUFFIX)
    if buffer_path is not None and not for_prediction and getattr(model, "replay_buffer", None) is not None:
        restored.append(_load_replay_buffer(model.replay_buffer, buffer_path))
        if not exact and isinstance(model.replay_buffer, HerReplayBuffer):
            _end_open_episodes(model.replay_buffer)
    if exact:
        _restore_env_states(env, env_states)
        restored.append(f"env states ({len(env_states)} envs)")
    elif env is not None and not for_prediction:
        not_restored.append(_why_envs_reset(env, env_states))
    restore_rng = restore_rng and not for_prediction
    _restore_run_state(info, state, model, env if exact else None, restore_rng)
    if restore_rng and "rng" in state:
        restored.append("RNG states")
    return ResumedRun(model, info, state.get("callback_state"), exact, restored, not_restored, env_states)


def _load_replay_buffer(buffer: Any, path: Path) -> str:
    """Fill ``buffer`` from the attachment at ``path``; returns what was restored, in words."""
    try:
        saved = decode_replay_buffer(path.read_bytes())
        saved_envs = saved.arrays["actions"].shape[1]
        fitted = saved
        if saved_envs != buffer.n_envs or saved.buffer_size != buffer.buffer_size:
            fitted = regroup_replay_buffer(saved, buffer.n_envs, buffer.buffer_size,
                                           getattr(buffer, "optimize_memory_usage", False))
        restore_replay_buffer(buffer, fitted)
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot restore the replay buffer ({exc})") from exc
    kept, total = _transitions(fitted), _transitions(saved)
    if fitted is saved:
        return f"replay buffer ({kept} transitions)"
    return (f"replay buffer ({kept} of {total} transitions, regrouped from {saved_envs} envs x "
            f"{saved.buffer_size} slots to {buffer.n_envs} x {buffer.buffer_size})")


def _why_envs_reset(env: VecEnv, env_states: list[Any] | None) -> str:
    if env_states is None:
        return "env states (the envs do not implement get_env_state: they start from a reset)"
    if len(env_states) != env.num_envs:
        return f"env states (the checkpoint has {len(env_states)} envs, this run {env.num_envs}: envs start from a reset)"
    return f"env states (the envs have no {SET_ENV_STATE}(): they start from a reset)"


def _transitions(copy: ReplayBufferCopy) -> int:
    actions = copy.arrays["actions"]
    return int(actions.shape[0] * actions.shape[1])


def regroup_replay_buffer(saved: ReplayBufferCopy, n_envs: int, buffer_size: int,
                          optimize_memory_usage: bool = False) -> ReplayBufferCopy:
    """``saved`` laid out for ``n_envs`` columns of ``buffer_size`` slots.

    Transitions are put in the order they were collected (time, then env) and the
    newest ``n_envs * buffer_size`` of them kept, rounded down to a multiple of
    ``n_envs``. Each transition keeps its own ``next_observations``, so which env
    column it sits in does not matter to sampling.

    :raises ValueError: for ``optimize_memory_usage`` buffers, whose next
        observation is the following slot of the same column
    """
    if optimize_memory_usage:
        raise ValueError("a buffer with optimize_memory_usage=True cannot be regrouped for another number "
                         "of envs or buffer size; resume with the checkpoint's")
    if "ep_start" in saved.arrays or saved.infos is not None:
        raise ValueError("a HerReplayBuffer's episodes cannot be regrouped for another number of envs or "
                         "buffer size; resume with the checkpoint's")
    filled = saved.arrays["actions"].shape[0]
    order = np.r_[saved.pos:filled, 0:saved.pos] if saved.full else np.arange(filled)
    flat = {name: array[order].reshape(-1, *array.shape[2:]) for name, array in saved.arrays.items()}
    available = len(flat["actions"])
    kept = min(available, n_envs * buffer_size)
    kept -= kept % n_envs
    arrays = {name: array[available - kept:].reshape(kept // n_envs, n_envs, *array.shape[1:])
              for name, array in flat.items()}
    rows = kept // n_envs
    return ReplayBufferCopy(arrays, rows % buffer_size, rows == buffer_size, buffer_size)


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


def _read_state(info: CheckpointInfo, suffix: str, pickled_suffix: str, allow_pickle: bool) -> Any:
    """The attachment with ``suffix`` decoded, or an older checkpoint's pickle if allowed; None if neither."""
    path = info.attachment(suffix)
    if path is not None:
        try:
            return decode_npz(path.read_bytes())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    pickled = info.attachment(pickled_suffix)
    if pickled is None:
        return None
    if not allow_pickle:
        raise CheckpointError(
            f"{pickled}: a pickle written by an older rtsave_async; unpickling runs any code it holds, so it is not "
            "loaded by default. If you trust this checkpoint, load it with load_checkpoint(..., allow_pickle=True) "
            "(rtsave: --allow_pickle)")
    try:
        return pickle.loads(pickled.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise CheckpointError(f"{pickled}: unreadable ({type(exc).__name__}: {exc})") from exc


def _with_vec_normalize(info: CheckpointInfo, env: VecEnv, returns: np.ndarray | None, allow_pickle: bool) -> VecEnv:
    """``env`` wrapped in the checkpoint's VecNormalize (replacing one passed in); ``env`` if it has none."""
    saved = _read_state(info, VEC_NORMALIZE_SUFFIX, PICKLED_VEC_NORMALIZE_SUFFIX, allow_pickle)
    if saved is None:
        return env
    venv = env.venv if isinstance(env, VecNormalize) else env
    if isinstance(saved, VecNormalize):  # an older checkpoint's pickle
        saved.set_venv(venv)
        if returns is not None:
            saved.returns = returns
        return saved
    try:
        return _vec_normalize_from_statistics(saved, venv)
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
        path = info.attachment(VEC_NORMALIZE_SUFFIX) or info.attachment(PICKLED_VEC_NORMALIZE_SUFFIX)
        raise CheckpointError(f"{path}: does not hold VecNormalize statistics for this env ({exc!r})") from exc


def _vec_normalize_from_statistics(saved: dict[str, Any], venv: VecEnv) -> VecNormalize:
    """A VecNormalize around ``venv`` continuing from :func:`vec_normalize_statistics`' output."""
    vec_normalize = VecNormalize(venv, **{name: saved[name] for name in VEC_NORMALIZE_SETTINGS})
    obs_rms = getattr(vec_normalize, "obs_rms", None)  # absent with norm_obs=False
    if isinstance(obs_rms, dict):
        for key, rms in obs_rms.items():
            _set_running_statistics(rms, saved["obs_rms"][key])
    elif obs_rms is not None:
        _set_running_statistics(obs_rms, saved["obs_rms"])
    _set_running_statistics(vec_normalize.ret_rms, saved["ret_rms"])
    if saved["returns"].shape == vec_normalize.returns.shape:
        vec_normalize.returns = saved["returns"]
    # else resumed with another number of envs: the per-env discounted returns start from zero, like the envs
    return vec_normalize


def _set_running_statistics(rms: Any, saved: dict[str, Any]) -> None:
    if np.shape(saved["mean"]) != np.shape(rms.mean):
        raise ValueError(f"statistics of shape {np.shape(saved['mean'])}, this env needs {np.shape(rms.mean)}")
    rms.mean, rms.var, rms.count = saved["mean"], saved["var"], saved["count"]


def _restore_run_state(info: CheckpointInfo, state: dict[str, Any], model: BaseAlgorithm, env: VecEnv | None,
                       restore_rng: bool) -> None:
    """From the state file: the Monitors (with the env states, when ``env`` is given), SB3's recent episodes, RNGs."""
    try:
        if env is not None and state.get("monitor_states") is not None:
            _restore_monitor_states(env, state["monitor_states"])
        if state.get("episode_info_buffers") is not None:
            _restore_episode_info_buffers(model, state["episode_info_buffers"])
        if restore_rng and "rng" in state:
            _restore_rng(state["rng"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{_state_path(info)}: does not hold a checkpoint state ({reason})") from exc


def _state_path(info: CheckpointInfo) -> Path | None:
    return info.attachment(STATE_SUFFIX) or info.attachment(PICKLED_STATE_SUFFIX)


def _end_open_episodes(buffer: HerReplayBuffer) -> None:
    """The envs were reset: HER's episodes in progress end at the checkpoint (as SB3's ``load_replay_buffer`` does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's advice there is about its own loader's flag
        buffer.truncate_last_trajectory()


def _restore_monitor_states(env: VecEnv, states: list[dict[str, Any]]) -> None:
    """Put each env's SB3 Monitor back mid-episode (after the reset of :func:`_restore_env_states`)."""
    if not all(env.env_is_wrapped(Monitor)):
        return
    now = time.time()
    for index, state in enumerate(states):
        values = {name: state[name] for name in MONITOR_ATTRIBUTES}
        for name in ("episode_returns", "episode_lengths", "episode_times"):
            values[name] = values[name].tolist()
        values["t_start"] = now - state["elapsed"]
        for name, value in values.items():
            env.env_method("set_wrapper_attr", name, value, indices=[index])


def _restore_episode_info_buffers(model: BaseAlgorithm, buffers: dict[str, list[Any]]) -> None:
    """Refill SB3's recent-episode buffers, which ``learn(reset_num_timesteps=False)`` then keeps."""
    window = model._stats_window_size
    model.ep_info_buffer = deque(buffers["ep_info_buffer"], maxlen=window)
    model.ep_success_buffer = deque(buffers["ep_success_buffer"], maxlen=window)


def _restore_env_states(env: VecEnv, states: list[Any]) -> None:
    """Reset the innermost VecEnv (so wrappers' statistics stay as saved), then set states."""
    env.unwrapped.reset()
    for index, state in enumerate(states):
        env.env_method(SET_ENV_STATE, state, indices=[index])


def _restore_rng(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    th.set_rng_state(states["torch"])


__all__ = ["ALGORITHMS", "CheckpointError", "CheckpointInfo", "ResumedRun", "find_checkpoint", "load_checkpoint",
           "regroup_replay_buffer"]
