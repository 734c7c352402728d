"""Read what a writer stored: final files only, in the order they were taken."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from rtsave_async.names import JSON_SUFFIX, file_prefix, is_temp_name, parse_sequence, validate_category


def list_snapshot_files(save_dir: str | os.PathLike[str], category: str) -> list[Path]:
    """The snapshot files of ``category`` in ``save_dir``, oldest first.

    Temp files (a write in progress, or left by a crash) are never listed.
    """
    folder = Path(save_dir) / validate_category(category)
    prefix = file_prefix(category)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    numbered = []
    for name in names:
        sequence = parse_sequence(name, prefix)
        if sequence is not None and name.endswith(JSON_SUFFIX) and not is_temp_name(name):
            numbered.append((sequence, name))
    return [folder / name for _, name in sorted(numbered)]


def load_records(save_dir: str | os.PathLike[str], category: str) -> list[list[Any]]:
    """Every snapshot of ``category``, one list of records per file, oldest first.

    :raises ValueError: naming the file, if one is not valid JSON (never one this
        package wrote: its files are published whole)
    """
    return [read_snapshot_file(path) for path in list_snapshot_files(save_dir, category)]


def iter_records(save_dir: str | os.PathLike[str], category: str) -> Iterator[Any]:
    """Every record of ``category`` in order, across files (errors as :func:`load_records`)."""
    for path in list_snapshot_files(save_dir, category):
        yield from read_snapshot_file(path)


def read_snapshot_file(path: str | os.PathLike[str]) -> Any:
    """The decoded content of one snapshot file; ``ValueError`` naming it if it is not JSON."""
    data = Path(path).read_bytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a valid snapshot file ({exc})") from None
