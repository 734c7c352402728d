"""One reader for every layout: ``open_run(path)`` -> :class:`Run`.

A run is what one or more writers stored under a save_dir (see
:mod:`rtsave_async.names`): per category, either one JSON file per save (format
``json``) or append-only ``.jsonl.zst`` segments (format ``jsonl.zst``), plus
``run.json``, ``writers/<id>.json`` and the legacy ``writer_stats.json``. Runs written
before ``run.json`` existed (no metadata in the records) are read too.

Order: every save carries ``_rtsave`` (writer, per-writer seq, UTC time); saves are
merged across files, segments and writers by ``(time, writer, seq)``. Saves without
it (older runs) come first, in the order of the sequence number in their file names.

Damage (a file that is not JSON, a corrupt zstd frame or JSON line in a segment, an
unfinished last frame in a closed segment) never stops a read: it is skipped, every
other record is read, and a :class:`Problem` naming the file and byte offset is
appended to :attr:`Run.problems` and issued once as a :class:`RunDamageWarning`
(``errors="raise"`` raises ``ValueError`` with the same text instead). The unfinished
last frame of an ``.open`` segment is a write in progress, not damage.
"""

from __future__ import annotations

import difflib
import gc
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import orjson

from rtsave_async.names import (
    ARCHIVES_FOLDER,
    CHECKPOINTS,
    HYPERPARAMETERS,
    JSON_SUFFIX,
    NON_CATEGORY_FOLDERS,
    PENDING_SUFFIX,
    RUN_MANIFEST_KEY,
    STANDARD_CATEGORIES,
    STATS_KEY,
    WRITERS_FOLDER,
    ParsedName,
    file_prefix,
    key as join_key,
    parse_name,
    published_name,
    validate_category,
)
from rtsave_async.readers.flatten import records_to_frame
from rtsave_async.readers.lineage import Entry, TrainingStart, superseded
from rtsave_async.readers.segments import FRAME_MAGIC, scan_frames
from rtsave_async.readers.store import RunStore, open_store

if TYPE_CHECKING:
    import pandas as pd

    from rtsave_async.readers.cursor import RunCursor

METADATA_KEY = "_rtsave"
Branches = Literal["current", "all"]
Errors = Literal["warn", "raise"]
_DATA_KINDS = ("json", "segment", "segment_open", "parquet")
#: Data files read whole, once (a segment is read from an offset on).
WHOLE_FILE_KINDS = ("json", "parquet")
# A budgeted segment read's window: the compressed bytes its budget took so far, times this.
_WINDOW_MARGIN = 1.25


class RunDamageWarning(UserWarning):
    """Part of a run could not be read; the message names the file and byte offset."""


@dataclass(frozen=True)
class Problem:
    """Something skipped while reading: ``url`` of the file, ``offset`` (bytes) if known."""

    url: str
    offset: int | None
    message: str

    def __str__(self) -> str:
        where = self.url if self.offset is None else f"{self.url} at byte {self.offset}"
        return f"{where}: {self.message}"


class Record(NamedTuple):
    """A record with where it came from (``records(..., with_metadata=True)``, cursors).

    ``writer``, ``seq`` (the writer's save counter in this category) and ``time`` (UTC
    ISO 8601) are None for records written before this metadata existed; ``key`` is the
    file's key in the run (a segment's without ``.open``).
    """

    data: Any
    category: str
    writer: str | None
    seq: int | None
    time: str | None
    key: str


@dataclass
class Checkpoint:
    """A complete checkpoint: every file its metadata lists is present with its size."""

    key: str  # of the metadata .json
    path: str  # the metadata .json as the store names it (a local path here): load_checkpoint(path)
    timestep: int | None
    metadata: dict[str, Any] = field(repr=False)
    bytes: int = 0  # all its files together


class DataFile(NamedTuple):
    """One data file of a category, as listed (a segment's key ends in ``.open`` while
    it is appended)."""

    key: str
    name: ParsedName

    @property
    def cursor_key(self) -> str:
        """The key without ``.open``: the same before and after a segment is published."""
        return published_name(self.key)


@dataclass
class Save:
    """One save: the payload as stored (array or object, ``_rtsave`` removed) and its metadata."""

    category: str
    data: Any
    key: str
    writer: str | None = None
    seq: int | None = None
    time: str | None = None

    @property
    def order(self) -> tuple[int, str, str, int]:
        return (0 if self.time is None else 1, self.time or "", self.writer or "", self.seq or 0)

    def records(self) -> list[Any]:
        return self.data if isinstance(self.data, list) else [self.data]

    def record(self, data: Any) -> Record:
        """One of :meth:`records` with this save's metadata."""
        return Record(data, self.category, self.writer, self.seq, self.time, self.key)


def open_run(path_or_store: str | os.PathLike[str] | RunStore, *, errors: Errors = "warn",
             storage_options: dict[str, Any] | None = None) -> Run:
    """Open the run stored at ``path_or_store`` (a folder, a storage URL such as
    ``s3://bucket/prefix/run``, or a :class:`RunStore`).

    :param errors: ``"warn"`` (default): damaged parts are skipped and reported in
        :attr:`Run.problems` and as a :class:`RunDamageWarning`; ``"raise"``: a
        ``ValueError`` naming the file and offset instead
    :param storage_options: for a URL: options of its fsspec file system (default: the
        backend's environment and config, e.g. ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``)
    :raises FileNotFoundError: naming the path, if there is no such folder
    :raises ValueError: naming the path, if the folder holds no run, or an empty one
        (no ``run.json`` and no snapshot files; a run whose writer has started has
        ``run.json`` and opens, with no categories yet)
    """
    store = open_store(path_or_store, storage_options)
    if not store.is_run_root():
        raise FileNotFoundError(f"{store.url()}: no such run folder")
    run = Run(store, errors=errors)
    if not store.exists(RUN_MANIFEST_KEY) and not run.categories():
        empty = [folder + "/" for folder in store.folders() if folder in STANDARD_CATEGORIES]
        if empty:
            raise ValueError(f"{store.url()}: an empty run (no {RUN_MANIFEST_KEY}, no snapshot files in "
                             f"{', '.join(sorted(empty))})")
        raise ValueError(f"{store.url()}: not an rtsave run (no {RUN_MANIFEST_KEY}, no category folder "
                         f"holding snapshot files)")
    return run


@dataclass
class Run:
    """A run's records, checkpoints and writers; see :func:`open_run`."""

    store: RunStore
    errors: Errors = "warn"
    problems: list[Problem] = field(default_factory=list)
    _reported: set[tuple[str, int | None]] = field(default_factory=set, repr=False)
    _archive_manifests: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    #: Segment (cursor key) -> compressed bytes per decoded byte of its frames read so far.
    _compressed_per_decoded: dict[str, float] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ layout
    @property
    def url(self) -> str:
        return self.store.url()

    def manifest(self) -> dict[str, Any] | None:
        """The content of ``run.json`` (None for runs written before it existed)."""
        return self._read_json_object(RUN_MANIFEST_KEY)

    def categories(self) -> list[str]:
        """Categories holding at least one data file: the standard ones first, then custom ones."""
        return list(self.files_by_category())

    def files_by_category(self) -> dict[str, list[DataFile]]:
        """Each category's data files (as :meth:`data_files`), in :meth:`categories` order."""
        found = {}
        for folder in self.store.folders():
            if folder not in NON_CATEGORY_FOLDERS and not folder.startswith("."):
                files = self._data_files(folder)
                if files:
                    found[folder] = files
        standard = [category for category in STANDARD_CATEGORIES if category in found]
        return {category: found[category] for category in standard + sorted(set(found) - set(standard))}

    def data_files(self, category: str) -> list[DataFile]:
        """The json files and segments of ``category``, in name order (seq, then writer tag)."""
        self._check_category(category)
        return self._data_files(category)

    def _data_files(self, category: str) -> list[DataFile]:
        prefix = file_prefix(category)
        files: dict[str, DataFile] = {}
        replaced, pending_tags = self.archive_state()
        for file_key in self.store.list(category):
            name = parse_name(file_key.rpartition("/")[2])
            if name is None or name.prefix != prefix or name.kind not in _DATA_KINDS:
                continue
            if name.tag in pending_tags or published_name(file_key) in replaced:
                continue  # an archive's files before it is published, or the files it replaced
            data_file = DataFile(file_key, name)
            # During a rename both names may be listed: the published one wins.
            if data_file.cursor_key not in files or name.kind != "segment_open":
                files[data_file.cursor_key] = data_file
        return sorted(files.values(), key=lambda data_file: (data_file.name.seq, data_file.name.tag or ""))

    def archive_state(self) -> tuple[set[str], set[str]]:
        """What ``rtsave archive`` left (:mod:`rtsave_async.formats.archive`): the keys
        its published archives replaced (hidden even while still on disk), and the writer
        tags of archives in progress (their files are not read until published)."""
        replaced: set[str] = set()
        pending: set[str] = set()
        published: set[str] = set()
        for manifest_key in self.store.list(ARCHIVES_FOLDER):
            name = _file_name(manifest_key)
            if name.startswith("."):
                continue
            if name.endswith(PENDING_SUFFIX):
                pending.add(name.removesuffix(PENDING_SUFFIX))
            elif name.endswith(JSON_SUFFIX):
                published.add(name.removesuffix(JSON_SUFFIX))
                if manifest_key not in self._archive_manifests:  # published once, never changed
                    self._archive_manifests[manifest_key] = self._read_json_object(manifest_key) or {}
                for keys in (self._archive_manifests[manifest_key].get("replaces") or {}).values():
                    replaced.update(keys)
        return replaced, pending - published

    def _check_category(self, category: str) -> None:
        validate_category(category)
        if category in STANDARD_CATEGORIES or self.store.list(category):
            return
        known = self.categories()
        close = difflib.get_close_matches(category, list(STANDARD_CATEGORIES) + known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{self.url}: no category {category!r}{hint}; known categories: "
                         f"{', '.join(dict.fromkeys(list(STANDARD_CATEGORIES) + known))}")

    # ------------------------------------------------------------------ records
    def records(
        self,
        category: str,
        since: str | None = None,
        with_metadata: bool = False,
        branches: Branches = "current",
    ) -> Iterator[Any]:
        """Every record of ``category`` in order (see the module docstring).

        :param since: only records written after this UTC time (ISO 8601, e.g.
            ``"2026-12-01T18:00:00Z"``); records without a write time are compared by
            the second in their file name (local time)
        :param with_metadata: yield :class:`Record` tuples instead of the bare records
        :param branches: ``"current"`` (default): leave out records a resume from an
            earlier checkpoint superseded (:mod:`rtsave_async.readers.lineage`);
            ``"all"``: every record of every branch, in write order
        :raises ValueError: for a category this run does not have (naming the known ones)
        """
        pairs = self._record_pairs(category, since, branches)
        if with_metadata:
            return (save.record(record) for save, record in pairs)
        return (record for _, record in pairs)

    def _record_pairs(self, category: str, since: str | None, branches: Branches) -> list[tuple[Save, Any]]:
        """(save, record) for every record :meth:`records` yields, read now."""
        if branches not in ("current", "all"):
            raise ValueError(f"branches must be 'current' or 'all', got {branches!r}")
        pairs = [(save, record) for save in self.saves(category) for record in save.records()]
        if branches == "current":
            pairs = self._current_branch(category, pairs)
        if since is not None:
            pairs = list(_written_after(pairs, since))
        return pairs

    def hyperparameters(self, branches: Branches = "current") -> list[dict[str, Any]]:
        """The ``hyperparameters`` records, one per training start, oldest first."""
        return list(self.records(HYPERPARAMETERS, branches=branches))

    def checkpoints(self, branches: Branches = "current") -> list[Checkpoint]:
        """Complete checkpoints, newest last (the one to resume from is ``[-1]``).

        Complete: every file the metadata lists exists with the size it records (the
        metadata is written last, so an interrupted checkpoint has none, but a file
        removed later would be noticed). Superseded ones are left out unless
        ``branches="all"``.
        """
        checkpoints = (self.complete_checkpoint(record)
                       for record in self.records(CHECKPOINTS, with_metadata=True, branches=branches))
        return [checkpoint for checkpoint in checkpoints if checkpoint is not None]

    def complete_checkpoint(self, record: Record) -> Checkpoint | None:
        """The :class:`Checkpoint` of a ``checkpoints`` record (``with_metadata=True``) if
        every file it lists exists with the size it records, else None."""
        metadata = record.data
        if not isinstance(metadata, dict):
            return None
        folder = record.key.rpartition("/")[0]
        try:
            listed = [(join_key(folder, entry["name"]), int(entry["bytes"]))
                      for entry in metadata.get("files", {}).values()]
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        if not listed or not all(self._has_size(file_key, size) for file_key, size in listed):
            return None
        return Checkpoint(record.key, self.store.url(record.key), metadata.get("timestep"), metadata,
                          sum(size for _, size in listed))

    def writer_stats(self) -> dict[str, Any]:
        """``{"writers": {writer id: its writers/<id>.json manifest}, "total": writer_stats.json}``.

        ``total`` is the legacy file (the total over the writers, written at close; None
        while the first writer is still running); ``writers`` is empty for runs written
        before per-writer manifests.
        """
        writers = {}
        for manifest_key in sorted(self.store.list(WRITERS_FOLDER)):
            name = manifest_key.rpartition("/")[2]
            if name.endswith(".json") and not name.startswith("."):
                manifest = self._read_json_object(manifest_key)
                if manifest is not None:
                    writers[name.removesuffix(".json")] = manifest
        return {"writers": writers, "total": self._read_json_object(STATS_KEY)}

    def to_pandas(self, category: str, with_metadata: bool = False, branches: Branches = "current") -> pd.DataFrame:
        """Every record of ``category`` as one DataFrame row, nested fields as dotted columns.

        ``detailed_info.robot_state.position.x`` for nested dicts; lists (e.g. joint
        positions) stay list values. ``with_metadata`` adds ``_rtsave.writer``,
        ``_rtsave.seq`` and ``_rtsave.time`` columns. Needs pandas (the ``export`` extra).
        """
        data_files = self.data_files(category)
        if data_files and all(data_file.name.kind == "parquet" for data_file in data_files):
            from rtsave_async.readers.parquet import parquet_frame

            frame = parquet_frame(self, category, data_files, with_metadata, branches)
            if frame is not None:
                return frame
        with paused_gc():
            pairs = self._record_pairs(category, None, branches)
            if with_metadata:
                records = [{**record, METADATA_KEY: {"writer": save.writer, "seq": save.seq, "time": save.time}}
                           if isinstance(record, dict) else record for save, record in pairs]
            else:
                records = [record for _, record in pairs]
            del pairs
            frame = records_to_frame(records)
            del records  # freed while the collector is off: it would walk them once more
        return frame

    def cursor(self, category: str | None = None) -> RunCursor:
        """A cursor whose :meth:`~RunCursor.poll` returns what is new since its last poll."""
        from rtsave_async.readers.cursor import RunCursor

        if category is not None:
            self._check_category(category)
        return RunCursor(self, category)

    # ------------------------------------------------------------------ reading files
    def saves(self, category: str) -> list[Save]:
        """Every save of ``category`` (each branch), in order; a :class:`Save` holds the
        payload as stored (a list of records, or one object) without ``_rtsave``."""
        saves: list[Save] = []
        for data_file in self.data_files(category):
            if data_file.name.kind in WHOLE_FILE_KINDS:
                saves.extend(self.read_whole_file(category, data_file))
            else:
                saves.extend(self.read_segment(category, data_file, 0)[0])
        saves.sort(key=lambda save: save.order)
        return saves

    def read_whole_file(self, category: str, data_file: DataFile) -> list[Save]:
        """The saves of a json or Parquet file (none, reported, if it is damaged or has vanished)."""
        if data_file.name.kind == "json":
            save = self.read_json_save(category, data_file)
            return [] if save is None else [save]
        from rtsave_async.readers.parquet import read_table, table_saves

        try:
            return table_saves(read_table(self.store.read(data_file.key)), category, data_file.key)
        except FileNotFoundError:
            return []
        except ValueError as exc:
            self.report(data_file.key, None, str(exc))
            return []

    def read_json_save(self, category: str, data_file: DataFile) -> Save | None:
        """The save in one json file (None, reported, if it is not JSON or has vanished)."""
        try:
            data = orjson.loads(self.store.read(data_file.key))
        except FileNotFoundError:  # removed by retention after listing
            return None
        except orjson.JSONDecodeError as exc:
            self.report(data_file.key, None, f"not a valid snapshot file ({exc})")
            return None
        return _save(category, data, data_file)

    def read_segment(self, category: str, data_file: DataFile, start: int,
                     max_decoded: int | None = None) -> tuple[list[Save], int, bool]:
        """The saves of a segment from byte ``start`` on, the offset to continue from, and
        whether it stopped short of the end at ``max_decoded``.

        Reads the ``.open`` name, or the published one if the segment was closed
        meanwhile. The offset stops before an unfinished last frame.

        :param max_decoded: read only the frames up to about this many decompressed bytes
            (at least one frame, however big); default None: all
        """
        key = data_file.key
        window = None if max_decoded is None else self._segment_window(data_file.cursor_key, max_decoded)
        end = None if window is None else start + window
        try:
            data = self.store.read(key, start, end)
        except FileNotFoundError:
            if key == data_file.cursor_key:
                return [], start, False
            key = data_file.cursor_key
            try:
                data = self.store.read(key, start, end)
            except FileNotFoundError:
                return [], start, False
        cut = window is not None and len(data) == window  # the window ends before the file does
        scan = scan_frames(data, start, max_decoded)
        while cut and not scan.frames:  # a frame larger than the window: widen it until one is whole
            window *= 2
            data = self.store.read(key, start, start + window)
            cut = len(data) == window
            scan = scan_frames(data, start, max_decoded)
        if window is not None and scan.frames:
            decoded = sum(len(payload) for _, payload in scan.frames)
            self._compressed_per_decoded[data_file.cursor_key] = (scan.end - start) / max(1, decoded)
        for offset, message in scan.damage:
            self.report(key, offset, message)
        if scan.torn and key == data_file.cursor_key and not cut:
            self.report(key, scan.end, "unfinished last frame in a closed segment (skipped)")
        return self._frame_saves(category, data_file, key, scan.frames), scan.end, scan.stopped or cut

    def _segment_window(self, cursor_key: str, max_decoded: int) -> int:
        """Compressed bytes to read for about ``max_decoded`` decoded ones: as many at
        first (compressed data is rarely larger), then sized from the segment's ratio so
        far, with a margin: a budgeted read then reads few bytes it will read again (with
        a window of ``max_decoded``, about ratio - 1 times the bytes it decodes)."""
        ratio = self._compressed_per_decoded.get(cursor_key)
        if ratio is None:
            return max_decoded
        return max(1, int(max_decoded * ratio * _WINDOW_MARGIN))

    def read_segment_tail(self, category: str, data_file: DataFile, tail_bytes: int) -> tuple[list[Save], bool]:
        """The saves in the complete frames of a segment's last ``tail_bytes`` bytes (the
        newest saves, cheaply), and whether that was the whole segment. Damage is not
        reported here: the first bytes may be the inside of an earlier frame."""
        for key in dict.fromkeys((data_file.key, data_file.cursor_key)):
            try:
                start = max(0, self.store.size(key) - tail_bytes)
                data = self.store.read(key, start)
            except FileNotFoundError:
                continue
            first = 0 if start == 0 else data.find(FRAME_MAGIC)
            if first < 0:
                return [], start == 0
            frames = scan_frames(data[first:], start + first).frames
            return self._frame_saves(category, data_file, key, frames), start == 0
        return [], True

    def _frame_saves(self, category: str, data_file: DataFile, key: str, frames: list[tuple[int, bytes]]) -> list[Save]:
        saves = []
        for frame_offset, payload in frames:
            for line_number, line in enumerate(payload.splitlines()):
                if not line.strip():
                    continue
                try:
                    entry = orjson.loads(line)
                    data, metadata = entry["data"], entry.get(METADATA_KEY) or {}
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    self.report(key, frame_offset, f"line {line_number + 1} of the frame is not a save ({exc!r})")
                    continue
                saves.append(_save(category, data, data_file, metadata))
        return saves

    def report(self, key: str, offset: int | None, message: str) -> None:
        """Record a :class:`Problem` (once per file and offset); raise it if ``errors="raise"``."""
        problem = Problem(self.store.url(key), offset, message)
        if self.errors == "raise":
            raise ValueError(str(problem))
        if (key, offset) in self._reported:
            return
        self._reported.add((key, offset))
        self.problems.append(problem)
        warnings.warn(str(problem), RunDamageWarning, stacklevel=3)

    def _current_branch(self, category: str, pairs: Iterable[tuple[Save, Any]]) -> list[tuple[Save, Any]]:
        pairs = list(pairs)
        starts = None if category != HYPERPARAMETERS else [_training_start(save, record) for save, record in pairs]
        keep = self.current_branch_mask(category, [(id(save), save.time, save.writer, _timestep(record))
                                                   for save, record in pairs], starts)
        return pairs if keep is None else [pair for pair, kept in zip(pairs, keep) if kept]

    def current_branch_mask(self, category: str, rows: list[tuple[Any, str | None, str | None, Any]],
                            starts: list[TrainingStart | None] | None = None) -> list[bool] | None:
        """Which of ``rows`` (save identity, save time, writer, record timestep), a
        category's records in write order, are on the current branch; None: all are."""
        starts = self._training_starts() if starts is None else starts
        resumes = [start for start in starts if start is not None and start.timestep > 0]
        if not resumes:
            return None
        save_numbers: dict[Any, int] = {}
        entries = [Entry(save_numbers.setdefault(save, len(save_numbers)), time, writer, _int_or_none(timestep))
                   for save, time, writer, timestep in rows]
        return [not dropped for dropped in superseded(entries, resumes)]

    def resumed(self) -> bool:
        """Whether a training start resumed from a checkpoint (a step > 0): only then can records be superseded."""
        return any(start is not None and start.timestep > 0 for start in self._training_starts())

    def _training_starts(self) -> list[TrainingStart | None]:
        saves = self.saves(HYPERPARAMETERS)
        return [_training_start(save, record) for save in saves for record in save.records()]

    # ------------------------------------------------------------------ small files
    def _read_json_object(self, key: str) -> Any:
        try:
            data = orjson.loads(self.store.read(key))
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError as exc:
            self.report(key, None, f"not valid JSON ({exc})")
            return None
        return data

    def _has_size(self, key: str, size: int) -> bool:
        try:
            return self.store.size(key) == size
        except FileNotFoundError:
            return False


def _save(category: str, data: Any, data_file: DataFile, metadata: dict[str, Any] | None = None) -> Save:
    """A :class:`Save` from a payload. A segment line gives ``metadata``; json files
    carry ``_rtsave`` in the object or in each record of the array instead."""
    metadata = metadata or _pop_metadata(data)
    if not metadata:
        return Save(category, data, data_file.cursor_key, seq=data_file.name.seq)
    return Save(category, data, data_file.cursor_key, metadata.get("writer"), metadata.get("seq"),
                metadata.get("time"))


def _pop_metadata(data: Any) -> dict[str, Any] | None:
    """Remove ``_rtsave`` from a json file's payload; the first one found."""
    if isinstance(data, dict):
        return data.pop(METADATA_KEY, None)
    found = None
    if isinstance(data, list):
        for record in data:
            if type(record) is dict:
                metadata = record.pop(METADATA_KEY, None)
                found = found or metadata
    return found


def _timestep(record: Any) -> int | None:
    return _int_or_none(record.get("timestep") if isinstance(record, dict) else None)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _file_name(file_key: str) -> str:
    return file_key.rpartition("/")[2]


def _training_start(save: Save, record: Any) -> TrainingStart | None:
    timestep = _timestep(record)
    return None if timestep is None else TrainingStart(timestep, save.time, save.writer)


def _written_after(pairs: Iterable[tuple[Save, Any]], since: str) -> Iterator[tuple[Save, Any]]:
    import datetime

    moment = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"since must be a UTC time with 'Z' or an offset, got {since!r}")
    utc = moment.astimezone(datetime.timezone.utc)
    iso = utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    local_stamp = utc.astimezone().strftime("%Y%m%d_%H%M%S")
    for save, record in pairs:
        if save.time is not None:
            if save.time > iso:
                yield save, record
        elif parse_name(save.key.rpartition("/")[2]).stamp >= local_stamp:
            yield save, record


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while millions of small objects are created: the
    collector would walk them again and again (2-3x the decoding time), and decoded
    JSON holds no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
