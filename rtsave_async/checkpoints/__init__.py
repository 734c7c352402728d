"""Checkpoints: file format, retention on disk, and resuming from them."""

from rtsave_async.checkpoints.resume import (
    ALGORITHMS,
    CheckpointError,
    CheckpointInfo,
    ResumedRun,
    find_checkpoint,
    load_checkpoint,
)
from rtsave_async.checkpoints.retention import prune_checkpoints

__all__ = ["ALGORITHMS", "CheckpointError", "CheckpointInfo", "ResumedRun", "find_checkpoint", "load_checkpoint", "prune_checkpoints"]
