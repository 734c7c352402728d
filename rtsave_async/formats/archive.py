"""Pack a closed run's records into few compressed files: ``rtsave archive``.

Every category but ``checkpoints`` (checkpoints stay as they are) is rewritten, in the
run's order and with every save's ``_rtsave`` metadata, as ``jsonl.zst`` segments or as
Parquet files (:mod:`rtsave_async.formats.parquet`) named with the archive's own writer
tag; the same :func:`~rtsave_async.readers.open_run` reads them. Crash safety, step by
step (each file is published whole by :meth:`Sink.create`, fsynced):

1. ``archives/<tag>.pending.json``: readers ignore files of this tag from now on;
2. the archive's files, each read back and compared with the saves it must hold;
3. ``archives/<tag>.json`` listing the files it replaces: from here readers read the
   archive and ignore the replaced files, even those still on disk; the pending marker goes;
4. the replaced files are removed.

A crash before 3 leaves the run as it was (plus ignored files); after 3, the archive.
The next ``archive`` of the run first finishes or clears what a crashed one left.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard

from rtsave_async import names
from rtsave_async.formats import JSONL_ZST
from rtsave_async.formats.metadata import segment_line
from rtsave_async.readers.run import DataFile, Run, Save, open_run
from rtsave_async.readers.status import run_status
from rtsave_async.sinks.base import Sink
from rtsave_async.sinks.local import LocalSink

PARQUET = "parquet"
ARCHIVE_FORMATS = (JSONL_ZST, PARQUET)
#: Records per archive file: bounds the memory a file is built in.
DEFAULT_RECORDS_PER_FILE = 200_000
SEGMENT_ZSTD_LEVEL = 9
SAVES_PER_FRAME = 1024  # whole-file archives need no small frames; frames still bound a torn tail


class ArchiveRefused(ValueError):
    """The run cannot be archived now (still being written, damaged); the message says why."""


@dataclass
class ArchiveReport:
    """What an archive did: files and bytes of the records before and after, per category."""

    url: str
    format: str
    tag: str
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    categories: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else float("inf")


def archive_run(path: str, format: str = PARQUET, records_per_file: int = DEFAULT_RECORDS_PER_FILE) -> ArchiveReport:
    """Archive the finished run at ``path`` into ``format`` (``"parquet"`` or ``"jsonl.zst"``).

    :raises ArchiveRefused: if the run is running or crashed (not closed), or a file is damaged
    :raises FileNotFoundError, ValueError: for a missing folder or one holding no run
    """
    if format not in ARCHIVE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(ARCHIVE_FORMATS)}, got {format!r}")
    run = open_run(path, errors="raise")
    state = run_status(run).state
    if state != "finished":
        raise ArchiveRefused(f"{run.url}: the run is {state} (its writers have not all closed); archive it "
                             f"once training has finished" + (" or resume it first" if state == "crashed" else ""))
    return asyncio.run(_archive(run, LocalSink(run.url, durable=True), format, records_per_file))


async def _archive(run: Run, sink: Sink, format: str, records_per_file: int) -> ArchiveReport:
    await sink.start()
    try:
        await finish_earlier_archives(run, sink)
        run = open_run(run.store, errors="raise")  # what the clean-up left
        tag = names.writer_tag(f"archive-{names.default_writer_id(time.time())}-{time.monotonic_ns()}")
        report = ArchiveReport(run.url, format, tag)
        pending = names.archive_manifest_key(tag, pending=True)
        await sink.create(pending, _dumps({"format": format, "started": names.utc_iso(time.time())}))
        replaces: dict[str, list[str]] = {}
        written: dict[str, list[str]] = {}
        try:
            for category in run.categories():
                if category != names.CHECKPOINTS:
                    await _archive_category(run, sink, category, format, tag, records_per_file, report,
                                            replaces, written.setdefault(category, []))
        except BaseException:
            # Not published, so the run is as it was: remove what was written (after a
            # crash instead, the next archive does).
            for key in [key for keys in written.values() for key in keys]:
                await sink.delete(key)
            await sink.delete(pending)
            raise
        await sink.create(names.archive_manifest_key(tag), _dumps({
            "format": format, "created": names.utc_iso(time.time()), "files": written, "replaces": replaces,
            "bytes_before": report.bytes_before, "bytes_after": report.bytes_after}))
        await sink.delete(pending)
        await _delete_replaced(run, sink, [key for keys in replaces.values() for key in keys])
        return report
    finally:
        await sink.close()


async def _archive_category(run: Run, sink: Sink, category: str, format: str, tag: str, records_per_file: int,
                            report: ArchiveReport, replaces: dict[str, list[str]], keys: list[str]) -> None:
    """Store ``category``'s saves in archive files of at most ``records_per_file`` records,
    each read back and compared before the next is written; ``keys`` gets each file
    once stored, ``replaces`` the category's original files, ``report`` the sizes."""
    originals = run.data_files(category)
    try:
        saves = run.saves(category)
    except ValueError as exc:
        raise ArchiveRefused(f"{exc}; nothing was archived") from None
    suffix = names.PARQUET_SUFFIX if format == PARQUET else names.SEGMENT_SUFFIX
    for sequence, chunk in enumerate(_chunks(saves, records_per_file), start=1):
        stem = names.snapshot_stem(names.file_prefix(category), time.time(), sequence, tag)
        key = names.key(category, stem + suffix)
        await sink.create(key, _encode(chunk, format))
        keys.append(key)
        data_file = DataFile(key, names.parse_name(names.split_key(key)[1]))
        stored = run.read_whole_file(category, data_file) if format == PARQUET else \
            run.read_segment(category, data_file, 0)[0]
        if _fingerprint(stored) != _fingerprint(chunk):
            raise ArchiveRefused(f"{sink.url(key)}: the archive file does not read back as the records it was "
                                 f"written from; nothing was archived")
    before = sum(run.store.size(data_file.key) for data_file in originals)
    after = sum(run.store.size(key) for key in keys)
    replaces[category] = [data_file.cursor_key for data_file in originals]
    report.categories[category] = {"files_before": len(originals), "files_after": len(keys),
                                   "bytes_before": before, "bytes_after": after}
    report.files_before += len(originals)
    report.files_after += len(keys)
    report.bytes_before += before
    report.bytes_after += after


def _chunks(saves: list[Save], records_per_file: int) -> list[list[Save]]:
    chunks: list[list[Save]] = [[]]
    count = 0
    for save in saves:
        size = len(save.records())
        if chunks[-1] and count + size > records_per_file:
            chunks.append([])
            count = 0
        chunks[-1].append(save)
        count += size
    return chunks if chunks[-1] else []


def _encode(saves: list[Save], format: str) -> bytes:
    if format == PARQUET:
        from rtsave_async.formats.parquet import encode_saves

        return encode_saves(saves)
    compressor = zstandard.ZstdCompressor(level=SEGMENT_ZSTD_LEVEL, write_checksum=True, write_content_size=True)
    frames = []
    for start in range(0, len(saves), SAVES_PER_FRAME):
        lines = [orjson.dumps(segment_line(save.data, _metadata(save))) + b"\n"
                 for save in saves[start:start + SAVES_PER_FRAME]]
        frames.append(compressor.compress(b"".join(lines)))
    return b"".join(frames)


def _metadata(save: Save) -> dict[str, Any]:
    """The save's metadata as a segment line carries it (its seq always, so the order of
    saves without a write time, their file sequence, survives)."""
    metadata = {"writer": save.writer, "seq": save.seq, "time": save.time}
    return {name: value for name, value in metadata.items() if value is not None}


def _fingerprint(saves: list[Save]) -> bytes:
    return orjson.dumps([(save.writer, save.seq, save.time, save.data) for save in saves])


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2)


async def finish_earlier_archives(run: Run, sink: Sink) -> None:
    """Remove what crashed archives left: the files of an unpublished one (and its
    marker), and the replaced files a published one had not removed yet."""
    replaced, pending_tags = run.archive_state()
    for tag in pending_tags:
        for folder in run.store.folders():
            for key in run.store.list(folder):
                parsed = names.parse_name(names.split_key(key)[1])
                if parsed is not None and parsed.tag == tag:
                    await sink.delete(key)
        await sink.delete(names.archive_manifest_key(tag, pending=True))
    await _delete_replaced(run, sink, sorted(replaced))
    for key in run.store.list(names.ARCHIVES_FOLDER):  # markers of archives that were published meanwhile
        if key.endswith(names.PENDING_SUFFIX) and run.store.exists(key.removesuffix(names.PENDING_SUFFIX) +
                                                                   names.JSON_SUFFIX):
            await sink.delete(key)


async def _delete_replaced(run: Run, sink: Sink, keys: list[str]) -> None:
    """Remove replaced data files (listed by their published names; a segment may still be ``.open``)."""
    for key in keys:
        for stored_key in (key, key + names.OPEN_SUFFIX):
            if run.store.exists(stored_key):
                await sink.delete(stored_key)
