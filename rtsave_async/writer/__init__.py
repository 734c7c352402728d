"""The writer: serialize, name and store snapshots on a dedicated thread."""

from rtsave_async.snapshot_queue import BackPressure
from rtsave_async.writer.snapshot_writer import STATS_FILE_NAME, SnapshotWriter

__all__ = ["STATS_FILE_NAME", "BackPressure", "SnapshotWriter"]
