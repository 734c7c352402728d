"""rtsave_async: real-time, crash-safe saving for Stable-Baselines3 training.

The writer and the readers import without torch or Stable-Baselines3; the callbacks
and checkpoint loading import them on first use (``rtsave_async.load_checkpoint``).
"""

from __future__ import annotations

import importlib
from typing import Any

from rtsave_async.readers import Run, iter_records, list_snapshot_files, load_records, open_run
from rtsave_async.writer import BackPressure, SnapshotWriter

__version__ = "0.1.0"

_IMPORTED_ON_FIRST_USE = {
    "ComprehensiveSavingCallback": "rtsave_async.callbacks",
    "RealTimeSavingCallback": "rtsave_async.callbacks",
    "CheckpointError": "rtsave_async.checkpoints",
    "load_checkpoint": "rtsave_async.checkpoints",
    "ReadingsInStepInfo": "rtsave_async.collectors",
}

__all__ = [
    "BackPressure",
    "CheckpointError",
    "ComprehensiveSavingCallback",
    "ReadingsInStepInfo",
    "RealTimeSavingCallback",
    "Run",
    "SnapshotWriter",
    "__version__",
    "iter_records",
    "list_snapshot_files",
    "load_checkpoint",
    "load_records",
    "open_run",
]


def __getattr__(name: str) -> Any:
    module = _IMPORTED_ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'rtsave_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
