"""File names: ``<prefix>_<YYYYMMDD_HHMMSS>_<seq>.json`` and the temp names beside them.

The timestamp is the submit time (local time, as in the seed layout); ``seq`` is an
8-digit per-category counter that continues across runs in the same folder, so names
are unique and ``seq`` orders them even at many saves a second or across a
daylight-saving change (local time can go back; readers sort by ``seq``). Temp files start with
a dot and end in ``.tmp`` so no reader mistakes them for data.
"""

from __future__ import annotations

import itertools
import os
import re
import time

SNAPSHOT_SUFFIX = ".json"
TEMP_SUFFIX = ".tmp"
_SEQUENCE_WIDTH = 8
_NAME_PATTERN = re.compile(r"(?P<prefix>.+)_(?P<stamp>\d{8}_\d{6})_(?P<seq>\d+)\.(?P<ext>[A-Za-z0-9._-]+)")
_TEMP_PATTERN = re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)\.(?P<n>\d+)" + re.escape(TEMP_SUFFIX))
_temp_counter = itertools.count()


def snapshot_stem(prefix: str, created: float, sequence: int) -> str:
    """The final file name, without extension, for a snapshot taken at ``created`` (epoch seconds)."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(created))
    return f"{prefix}_{stamp}_{sequence:0{_SEQUENCE_WIDTH}d}"


def parse_sequence(name: str, prefix: str) -> int | None:
    """The sequence number of a final name written with ``prefix``, else None."""
    match = _NAME_PATTERN.fullmatch(name)
    if match is None or match["prefix"] != prefix:
        return None
    return int(match["seq"])


def temp_name(final_name: str) -> str:
    """A unique hidden temp name for ``final_name`` owned by this process."""
    return f".{final_name}.{os.getpid()}.{next(_temp_counter)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """True for names that are never data: hidden files and temp files."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIX)


def temp_owner_pid(name: str) -> int | None:
    """The pid that created a temp file, or None if ``name`` is not one of ours."""
    match = _TEMP_PATTERN.fullmatch(name)
    return int(match["pid"]) if match else None
