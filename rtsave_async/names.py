"""Every name the package stores under: categories, prefixes, keys, file names, writer ids.

A run is a tree of relative POSIX keys (``"<category>/<file name>"``) below its save_dir::

    run.json                                         the run manifest (format, writers)
    writer_stats.json                                the writers' stats, totalled (legacy)
    writers/<writer_id>.json                         one writer's manifest and stats
    episodes/episodes_<YYYYMMDD_HHMMSS>_<seq>_<tag>.json          format "json"
    episodes/episodes_<YYYYMMDD_HHMMSS>_<seq>_<tag>.jsonl.zst     format "jsonl.zst"
    episodes/episodes_<YYYYMMDD_HHMMSS>_<seq>_<tag>.jsonl.zst.open   (being appended)
    checkpoints/checkpoint_<YYYYMMDD_HHMMSS>_<seq>_<tag>.zip      (and .json, written last)
    episodes/episodes_<YYYYMMDD_HHMMSS>_<seq>_<tag>.parquet       written by ``rtsave archive``
    archives/<tag>.json                              a finished archive: the files it replaced
    archives/<tag>.pending.json                      an archive in progress (its files are not read yet)

In object storage (issue #16) an open segment is a folder of immutable parts instead,
``<segment>.jsonl.zst.open.parts/<offset>``, each holding the segment's bytes from
``offset`` on (16 digits); readers see their concatenation as the ``.open`` file.

The stamp is local time (as in the seed layout); ``seq`` is an 8-digit counter per
writer per category that starts after the highest one found in the folder; ``tag`` is
6 hex digits naming the writer, so two writers in one folder never pick the same
name. Names from before writer tags (``<prefix>_<stamp>_<seq>.json``) still parse.
Temp files start with a dot and end in ``.tmp`` so no reader mistakes them for data.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import math
import os
import re
import socket
import time
from typing import NamedTuple

# ------------------------------------------------------------------ categories
EPISODES = "episodes"
ENVIRONMENT_STATES = "environment_states"
LEARNING_METRICS = "learning_metrics"
CHECKPOINTS = "checkpoints"
HYPERPARAMETERS = "hyperparameters"

#: Folder name -> file-name prefix, for the five standard categories.
FILE_PREFIXES: dict[str, str] = {
    EPISODES: "episodes",
    ENVIRONMENT_STATES: "env_states",
    LEARNING_METRICS: "learning_metrics",
    CHECKPOINTS: "checkpoint",
    HYPERPARAMETERS: "hyperparameters",
}

STANDARD_CATEGORIES: tuple[str, ...] = tuple(FILE_PREFIXES)

_CATEGORY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def validate_category(category: str) -> str:
    """Return ``category`` if it is a safe folder name, else raise ``ValueError``.

    A category becomes a folder under ``save_dir``; it must be 1-64 characters of
    letters, digits, ``_`` or ``-`` (starting with a letter or digit), so that it can
    never name a path outside ``save_dir`` (``..``, ``/``, NUL and the like).
    """
    if not isinstance(category, str) or not _CATEGORY_PATTERN.fullmatch(category):
        raise ValueError(
            f"invalid snapshot category {category!r}: use 1-64 letters, digits, '_' or '-'"
        )
    return category


def file_prefix(category: str) -> str:
    """The file-name prefix for ``category`` (its own name for custom categories)."""
    return FILE_PREFIXES.get(category, category)


# ------------------------------------------------------------------ run-level keys
RUN_MANIFEST_KEY = "run.json"
STATS_KEY = "writer_stats.json"
WRITERS_FOLDER = "writers"
ARCHIVES_FOLDER = "archives"
#: Run-level folders that hold no records.
NON_CATEGORY_FOLDERS: tuple[str, ...] = (WRITERS_FOLDER, ARCHIVES_FOLDER)
RUN_LOCK_NAME = ".run.lock"
PUBLISH_LOCK_NAME = ".publish.lock"  # held by LocalSink publishing where the file system has no hard links

JSON_SUFFIX = ".json"
SEGMENT_SUFFIX = ".jsonl.zst"
PARQUET_SUFFIX = ".parquet"
PENDING_SUFFIX = ".pending.json"
OPEN_SUFFIX = ".open"
TEMP_SUFFIX = ".tmp"

# A checkpoint's attachments, stored beside its JSON under the same stem.
MODEL_SUFFIX = ".zip"
REPLAY_BUFFER_SUFFIX = ".replay_buffer.npz.zst"
VEC_NORMALIZE_SUFFIX = ".vecnormalize.npz"
STATE_SUFFIX = ".state.npz"
#: The pickled attachments of checkpoints written before the pickle-free format.
PICKLED_VEC_NORMALIZE_SUFFIX = ".vecnormalize.pkl"
PICKLED_STATE_SUFFIX = ".state.pkl"


def key(folder: str, name: str) -> str:
    """The key of ``name`` in ``folder`` (``""`` for the run's root)."""
    return f"{folder}/{name}" if folder else name


def split_key(key_: str) -> tuple[str, str]:
    """``"folder/name"`` -> ``("folder", "name")``; a root key -> ``("", name)``."""
    folder, _, name = key_.rpartition("/")
    return folder, name


def writer_manifest_key(writer_id: str) -> str:
    """The key of a writer's manifest and stats: ``writers/<writer_id>.json``."""
    return key(WRITERS_FOLDER, writer_id + JSON_SUFFIX)


def archive_manifest_key(tag: str, pending: bool = False) -> str:
    """``archives/<tag>.json`` (an archive that is published) or ``archives/<tag>.pending.json``
    (one in progress); ``tag`` is the archive's writer tag in its files' names."""
    return key(ARCHIVES_FOLDER, tag + (PENDING_SUFFIX if pending else JSON_SUFFIX))


# ------------------------------------------------------------------ writer ids
_WRITER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]")


def validate_writer_name(name: str) -> str:
    """Return ``name`` if it is a safe writer id, else ``ValueError`` naming ``writer_name``.

    1-128 letters, digits, ``_``, ``.`` or ``-``, not starting with a dot (a writer id
    becomes a file name under ``writers/``).
    """
    if not isinstance(name, str) or not _WRITER_NAME_PATTERN.fullmatch(name):
        raise ValueError(f"writer_name must be 1-128 letters, digits, '_', '.' or '-' "
                         f"(not starting with '.'), got {name!r}")
    return name


def default_writer_id(started: float, pid: int | None = None, host: str | None = None) -> str:
    """``<host>-<pid>-<YYYYMMDDTHHMMSSZ>`` of a writer started at ``started`` (epoch s)."""
    host = _UNSAFE_CHARACTERS.sub("_", host if host is not None else socket.gethostname()).lstrip(".") or "host"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    return f"{host[:64]}-{pid if pid is not None else os.getpid()}-{stamp}"


def writer_tag(writer_id: str) -> str:
    """The 6 hex digits that name a writer in its file names (sha1 of its id)."""
    return hashlib.sha1(writer_id.encode()).hexdigest()[:6]


#: The last whole second :func:`utc_iso` formatted, and its text (one tuple: replaced at once).
_utc_second: tuple[int, str] = (-1, "")


def utc_iso(epoch_seconds: float) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: ``2026-12-01T18:02:48.123456Z``.

    The text of ``datetime.fromtimestamp(epoch_seconds, timezone.utc)`` (microseconds
    rounded half to even, as it does), its seconds part formatted once per second: the
    writer stamps every save with one, and ``strftime`` took 2 µs.
    """
    global _utc_second
    whole = math.floor(epoch_seconds)
    microseconds = round((epoch_seconds - whole) * 1e6)
    if microseconds == 1_000_000:
        whole, microseconds = whole + 1, 0
    second, text = _utc_second
    if whole != second:
        text = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _utc_second = (whole, text)
    return f"{text}.{microseconds:06d}Z"


def parse_utc_iso(text: object) -> float | None:
    """Epoch seconds of a :func:`utc_iso` time, None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------ data file names
_SEQUENCE_WIDTH = 8
_NAME_PATTERN = re.compile(
    r"(?P<prefix>.+)_(?P<stamp>\d{8}_\d{6})_(?P<seq>\d+)(?:_(?P<tag>[0-9a-f]{6}))?(?P<suffix>\.[A-Za-z0-9._-]+)"
)
_KINDS = {JSON_SUFFIX: "json", SEGMENT_SUFFIX: "segment", SEGMENT_SUFFIX + OPEN_SUFFIX: "segment_open",
          PARQUET_SUFFIX: "parquet"}


class ParsedName(NamedTuple):
    """A data file name taken apart. ``kind``: ``"json"``, ``"segment"``,
    ``"segment_open"``, ``"parquet"`` or ``"attachment"`` (a checkpoint's other files)."""

    prefix: str
    stamp: str  # YYYYMMDD_HHMMSS, local time
    seq: int
    tag: str | None  # None for names written before writer tags
    kind: str
    suffix: str  # from the first dot after the stem: ".json", ".jsonl.zst.open", ".replay_buffer.npz.zst"


def snapshot_stem(prefix: str, created: float, sequence: int, tag: str | None) -> str:
    """``<prefix>_<YYYYMMDD_HHMMSS>_<seq8>[_<tag>]`` for a file created at ``created`` (epoch s)."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(created))
    stem = f"{prefix}_{stamp}_{sequence:0{_SEQUENCE_WIDTH}d}"
    return f"{stem}_{tag}" if tag else stem


def parse_name(name: str) -> ParsedName | None:
    """The parts of a data file name, or None for anything else (temp files included)."""
    if is_temp_name(name):
        return None
    match = _NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    suffix = match["suffix"]
    return ParsedName(match["prefix"], match["stamp"], int(match["seq"]), match["tag"],
                      _KINDS.get(suffix, "attachment"), suffix)


def parse_sequence(name: str, prefix: str) -> int | None:
    """The sequence number of a data file name written with ``prefix``, else None."""
    parsed = parse_name(name)
    return parsed.seq if parsed is not None and parsed.prefix == prefix else None


def published_name(name: str) -> str:
    """A segment's name once closed: ``name`` without ``.open`` (the key readers' cursors use)."""
    return name.removesuffix(OPEN_SUFFIX)


# ------------------------------------------------------------------ segment parts (object storage)
PARTS_SUFFIX = ".parts"
_PART_WIDTH = 16


def parts_folder(open_key: str) -> str:
    """The folder holding the uploaded parts of open segment ``open_key``."""
    return open_key + PARTS_SUFFIX


def part_key(open_key: str, offset: int) -> str:
    """The key of the part of ``open_key`` that starts at byte ``offset``."""
    return key(parts_folder(open_key), f"{offset:0{_PART_WIDTH}d}")


def part_offset(name: str) -> int | None:
    """The start offset a part's file name gives, None for any other name."""
    return int(name) if len(name) == _PART_WIDTH and name.isdigit() else None


# ------------------------------------------------------------------ temp names
_TEMP_PATTERN = re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)\.(?P<n>\d+)" + re.escape(TEMP_SUFFIX))
_temp_counter = itertools.count()


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
