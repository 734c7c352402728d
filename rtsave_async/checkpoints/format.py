"""How a checkpoint's parts become bytes and come back.

A checkpoint is a JSON metadata file plus attachments sharing its name stem
(suffixes in :mod:`rtsave_async.names`)::

    checkpoint_<stamp>_<seq>.zip                the SB3 model (``PPO.load`` reads it unchanged)
    checkpoint_<stamp>_<seq>.replay_buffer.npz.zst   filled transitions only, zstd-compressed
    checkpoint_<stamp>_<seq>.vecnormalize.pkl   VecNormalize statistics (SB3's own pickle)
    checkpoint_<stamp>_<seq>.state.pkl          RNG states, env states, callback counters
    checkpoint_<stamp>_<seq>.json               written last; lists the files above

The encoders run on the writer thread and read only the copies the training thread
made (:mod:`rtsave_async.collectors.checkpoint`).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard
from stable_baselines3.common.save_util import save_to_zip_file

_ZSTD_LEVEL = 3


@dataclass
class ModelCopy:
    """What ``BaseAlgorithm.save`` would write, copied so training can go on."""

    data: dict[str, Any]
    params: dict[str, Any]
    pytorch_variables: dict[str, Any]


@dataclass
class ReplayBufferCopy:
    """The filled part of a replay buffer: its arrays plus ``pos`` and ``full``."""

    arrays: dict[str, np.ndarray]
    pos: int
    full: bool
    buffer_size: int

    @property
    def raw_bytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())


def encode_model(model: ModelCopy) -> bytes:
    """The SB3 zip, exactly as ``model.save`` writes it."""
    buffer = io.BytesIO()
    save_to_zip_file(buffer, data=model.data, params=model.params, pytorch_variables=model.pytorch_variables)
    return buffer.getvalue()


def encode_replay_buffer(copy: ReplayBufferCopy) -> bytes:
    """An ``.npz`` of the filled arrays and counters, zstd-compressed."""
    buffer = io.BytesIO()
    np.savez(buffer, pos=np.int64(copy.pos), full=np.bool_(copy.full), buffer_size=np.int64(copy.buffer_size),
             **copy.arrays)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(buffer.getvalue())


def decode_replay_buffer(blob: bytes) -> ReplayBufferCopy:
    """Inverse of :func:`encode_replay_buffer`."""
    with np.load(io.BytesIO(zstandard.ZstdDecompressor().decompress(blob)), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if name not in ("pos", "full", "buffer_size")}
        return ReplayBufferCopy(arrays, int(archive["pos"]), bool(archive["full"]), int(archive["buffer_size"]))


def encode_pickle(value: Any) -> bytes:
    """``value`` pickled with the highest protocol (the ``.state.pkl`` attachment)."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


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
    buffer.pos = copy.pos
    buffer.full = copy.full
