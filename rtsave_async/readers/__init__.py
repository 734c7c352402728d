"""Readers of a run: :func:`open_run` for every layout, and the older list-of-files helpers."""

from rtsave_async.readers.discover import find_runs
from rtsave_async.readers.local import iter_records, list_snapshot_files, load_records
from rtsave_async.readers.run import Checkpoint, Problem, Record, Run, RunDamageWarning, open_run
from rtsave_async.readers.status import RunStatus, run_status
from rtsave_async.readers.store import LocalRunStore, RunStore, open_store

__all__ = [
    "Checkpoint",
    "LocalRunStore",
    "Problem",
    "Record",
    "Run",
    "RunDamageWarning",
    "RunStatus",
    "RunStore",
    "find_runs",
    "iter_records",
    "list_snapshot_files",
    "load_records",
    "open_run",
    "open_store",
    "run_status",
]
