"""Checkpoints: capture on the training thread, the saver, file format, retention, resume."""

from rtsave_async.checkpoints.resume import (
    ALGORITHMS,
    CheckpointError,
    CheckpointInfo,
    ResumedRun,
    find_checkpoint,
    load_checkpoint,
)
from rtsave_async.checkpoints.retention import prune_checkpoints
from rtsave_async.checkpoints.saver import CheckpointSaver

__all__ = [
    "ALGORITHMS",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointSaver",
    "ResumedRun",
    "find_checkpoint",
    "load_checkpoint",
    "prune_checkpoints",
]
