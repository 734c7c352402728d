"""How a checkpoint's parts become bytes and come back.

A checkpoint is a JSON metadata file plus attachments sharing its name stem
(suffixes in :mod:`rtsave_async.names`)::

    checkpoint_<stamp>_<seq>.zip                the SB3 model (``PPO.load`` reads it unchanged)
    checkpoint_<stamp>_<seq>.replay_buffer.npz.zst   filled transitions only, zstd-compressed
    checkpoint_<stamp>_<seq>.vecnormalize.npz   VecNormalize statistics and settings
    checkpoint_<stamp>_<seq>.state.npz          RNG, env and Monitor states, callback counters
    checkpoint_<stamp>_<seq>.json               written last: one JSON object listing the files above

Runs written by earlier versions hold the metadata object in a one-element JSON array;
:func:`read_checkpoint_metadata` reads both shapes.

Only the SB3 zip may need pickle to load (SB3 stores some entries that way); our own
files are JSON and numpy arrays (:mod:`rtsave_async.checkpoints.state_format`).
Checkpoints of older versions had ``.state.pkl``/``.vecnormalize.pkl`` pickles instead.
The encoders run on the writer thread and read only the copies the training thread
made (:mod:`rtsave_async.checkpoints.capture`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from stable_baselines3.common.save_util import save_to_zip_file

from rtsave_async.checkpoints.state_format import is_packed, pack, unpack

_INFOS = "infos"  # the .npz entries of a HerReplayBuffer's stored infos
#: The methods of the exact-resume protocol an env may implement (called through the VecEnv).
GET_ENV_STATE = "get_env_state"
SET_ENV_STATE = "set_env_state"
#: The SB3 ``Monitor`` attributes kept in the state file (besides ``t_start``, kept as ``elapsed``).
MONITOR_ATTRIBUTES = ("rewards", "needs_reset", "current_reset_info", "total_steps", "episode_returns",
                      "episode_lengths", "episode_times")
#: The ``VecNormalize`` settings kept with its statistics (its constructor's arguments).
VEC_NORMALIZE_SETTINGS = ("training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon",
                          "norm_obs_keys")
_ZSTD_LEVEL = 3


@dataclass
class ModelCopy:
    """What ``BaseAlgorithm.save`` would write, copied so training can go on."""

    data: dict[str, Any]
    params: dict[str, Any]
    pytorch_variables: dict[str, Any]


@dataclass
class ReplayBufferCopy:
    """The filled part of a replay buffer: its arrays plus ``pos`` and ``full``.

    ``infos`` is the filled part of a ``HerReplayBuffer``'s per-transition info dicts
    (an object array, shallow-copied) when it keeps them (``copy_info_dict=True``).
    """

    arrays: dict[str, np.ndarray]
    pos: int
    full: bool
    buffer_size: int
    infos: np.ndarray | None = None

    @property
    def raw_bytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata object of a checkpoint ``.json`` (an object, or an older one-element array).

    :raises OSError: if the file cannot be read
    :raises ValueError: naming the file, if it is not JSON or holds neither shape
    """
    data = json.loads(Path(path).read_bytes())
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected one JSON object, got {type(data).__name__}")
    return data


def encode_model(model: ModelCopy) -> bytes:
    """The SB3 zip, exactly as ``model.save`` writes it."""
    buffer = io.BytesIO()
    save_to_zip_file(buffer, data=model.data, params=model.params, pytorch_variables=model.pytorch_variables)
    return buffer.getvalue()


def encode_replay_buffer(copy: ReplayBufferCopy) -> bytes:
    """An ``.npz`` of the filled arrays and counters, zstd-compressed."""
    buffer = io.BytesIO()
    infos = {} if copy.infos is None else pack(_INFOS, copy.infos.tolist(), "replay_buffer.infos")
    np.savez(buffer, pos=np.int64(copy.pos), full=np.bool_(copy.full), buffer_size=np.int64(copy.buffer_size),
             **copy.arrays, **infos)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(buffer.getvalue())


def decode_replay_buffer(blob: bytes) -> ReplayBufferCopy:
    """Inverse of :func:`encode_replay_buffer`."""
    with np.load(io.BytesIO(zstandard.ZstdDecompressor().decompress(blob)), allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    infos = _object_array(unpack(_INFOS, entries)) if any(is_packed(name, _INFOS) for name in entries) else None
    arrays = {name: array for name, array in entries.items()
              if name not in ("pos", "full", "buffer_size") and not is_packed(name, _INFOS)}
    return ReplayBufferCopy(arrays, int(entries["pos"]), bool(entries["full"]), int(entries["buffer_size"]), infos)


def restore_replay_buffer(buffer: Any, copy: ReplayBufferCopy) -> None:
    """Write ``copy`` into a freshly allocated buffer of the same size."""
    if copy.buffer_size != buffer.buffer_size:
        raise ValueError(f"replay buffer size {buffer.buffer_size} differs from the checkpoint's {copy.buffer_size}")
    for name, array in copy.arrays.items():
        if "/" in name:
            field, key = name.split("/", 1)
            target = getattr(buffer, field)[key]
        else:
            target = getattr(buffer, name)
        target[: len(array)] = array
    if copy.infos is not None and len(copy.infos):
        buffer.infos[: len(copy.infos)] = copy.infos
    buffer.pos = copy.pos
    buffer.full = copy.full


def _object_array(rows: list[list[Any]]) -> np.ndarray:
    """Rows of info dicts (one per env) as the 2-D object array ``HerReplayBuffer.infos`` is."""
    array = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for index, row in enumerate(rows):
        array[index, :] = row
    return array
