"""rtsave_async: real-time, crash-safe saving for Stable-Baselines3 training."""

from rtsave_async.callbacks import ComprehensiveSavingCallback, RealTimeSavingCallback
from rtsave_async.checkpoints import CheckpointError, load_checkpoint
from rtsave_async.readers import iter_records, list_snapshot_files, load_records
from rtsave_async.writer import BackPressure, SnapshotWriter

__version__ = "0.1.0"

__all__ = [
    "BackPressure",
    "CheckpointError",
    "ComprehensiveSavingCallback",
    "RealTimeSavingCallback",
    "SnapshotWriter",
    "__version__",
    "iter_records",
    "list_snapshot_files",
    "load_checkpoint",
    "load_records",
]
