"""The older readers of a local save_dir, now thin wrappers over :class:`Run`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rtsave_async.readers.run import Run
from rtsave_async.readers.store import LocalRunStore


def _run(save_dir: str | os.PathLike[str]) -> Run:
    store = LocalRunStore(save_dir)
    if not store.is_run_root():
        raise FileNotFoundError(f"{save_dir}: no such run folder")
    return Run(store, errors="raise")


def list_snapshot_files(save_dir: str | os.PathLike[str], category: str) -> list[Path]:
    """The data files (json files, segments) of ``category`` in ``save_dir``, oldest first.

    Temp files (a write in progress, or left by a crash) are never listed.

    :raises FileNotFoundError: if ``save_dir`` does not exist
    :raises ValueError: for a category the run does not have, naming the known ones
    """
    run = _run(save_dir)
    return [Path(run.store.url(data_file.key)) for data_file in run.data_files(category)]


def load_records(save_dir: str | os.PathLike[str], category: str) -> list[list[Any]]:
    """Every save of ``category``, oldest first: one list of records per save (a
    checkpoint or hyperparameters file holding one object is a list of one), without
    ``_rtsave``. Every branch of a resumed run is included (see :meth:`Run.records`).

    :raises ValueError: naming the file, if one is damaged (never one this package
        wrote: its files are published whole); and as :func:`list_snapshot_files`
    """
    return [save.records() for save in _run(save_dir).saves(category)]


def iter_records(save_dir: str | os.PathLike[str], category: str) -> Iterator[Any]:
    """Every record of ``category`` in order: ``open_run(save_dir).records(category)``,
    so records a resume from an earlier checkpoint superseded are left out (errors as
    :func:`load_records`)."""
    return _run(save_dir).records(category)
