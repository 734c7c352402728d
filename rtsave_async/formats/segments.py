"""Append-only segments: ``<category>/<prefix>_<YYYYMMDD_HHMMSS>_<seq>_<tag>.jsonl.zst``.

Each save is one JSON line ``{"_rtsave": {...}, "data": <records>}``; the lines of one
writer batch are compressed into independent zstd frames of about ``FRAME_BYTES`` (with
content size and checksum) and appended in one piece, so a crash tears at most the last
frame. A segment is named ``....jsonl.zst.open`` while it is appended to, and published
under its final name (rename) when it reaches ``segment_bytes`` or ``segment_age`` or
the writer closes. ``zstdcat segment | jq`` reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from rtsave_async import names
from rtsave_async.formats.files import NAME_ATTEMPTS, SequenceCounter
from rtsave_async.formats.metadata import segment_line, segment_line_bytes
from rtsave_async.sinks.base import Sink
from rtsave_async.snapshot_queue import Snapshot
from rtsave_async.validation import check_number, check_positive_int
from rtsave_async.formats.serialize import PIECE_BYTES, PIECES_ABOVE_BYTES, SnapshotSerializer, joined

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
MIN_SEGMENT_BYTES = 1024 * 1024
DEFAULT_SEGMENT_AGE = 300.0
FRAME_BYTES = 1024 * 1024  # of JSON lines per zstd frame, about (a backlog is appended as several)
# Level 1, not zstd's default 3: zstd's fastest regular level, and on the callbacks' JSON lines
# it writes no more (74 vs 83 bytes per seed-layout episode record; benchmarks/RESULTS.md).
ZSTD_LEVEL = 1


def check_segment_options(segment_bytes: int, segment_age: float) -> None:
    """``ValueError`` naming ``segment_bytes`` or ``segment_age`` when out of range."""
    check_positive_int("segment_bytes", segment_bytes)
    if segment_bytes < MIN_SEGMENT_BYTES:
        raise ValueError(f"segment_bytes must be at least {MIN_SEGMENT_BYTES} (1 MiB), got {segment_bytes!r}")
    check_number("segment_age", segment_age, 1, "seconds")


@dataclass
class _OpenSegment:
    key: str  # ends in .open
    opened: float  # time.monotonic()
    size: int = 0


class SegmentStore:
    """Appends snapshots to one open segment per category through ``sink``."""

    def __init__(self, sink: Sink, tag: str, serializer: SnapshotSerializer, sequences: SequenceCounter,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, segment_age: float = DEFAULT_SEGMENT_AGE) -> None:
        check_segment_options(segment_bytes, segment_age)
        self._sink = sink
        self._tag = tag
        self._serializer = serializer
        self._sequences = sequences
        self._segment_bytes = segment_bytes
        self._segment_age = segment_age
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True)
        self._open: dict[str, _OpenSegment] = {}

    @staticmethod
    def takes(snapshot: Snapshot) -> bool:
        """Whether ``snapshot`` becomes a line (checkpoints and attachments stay files)."""
        return not snapshot.attachments and not callable(snapshot.payload) and snapshot.category != names.CHECKPOINTS

    async def append(self, category: str, items: list[tuple[Snapshot, dict[str, Any]]]) -> tuple[str, int, int]:
        """Append ``items`` (snapshot, its metadata) of ``category`` as one frame.

        Returns the segment's key, the compressed bytes appended and the nanoseconds
        spent serializing and compressing.
        """
        encode_started = time.perf_counter_ns()
        # A frame's lines are encoded just before it is compressed: a fallen-behind
        # writer's backlog, encoded whole first, would reach zstd from memory, not the
        # caches (52 instead of 33-43 us of zstd per full-robot-state save).
        frames = [self._compress([self._line(snapshot, metadata) for snapshot, metadata in group])
                  for group in frame_groups(items)]
        frame = frames[0] if len(frames) == 1 else joined(frames)
        encode_ns = time.perf_counter_ns() - encode_started
        segment = self._open.get(category)
        if segment is None:
            segment = await self._start_segment(category, items[0][0].created)
        await self._sink.append(segment.key, frame)
        segment.size += len(frame)
        if segment.size >= self._segment_bytes:
            await self.publish(category)
        return segment.key, len(frame), encode_ns

    def _line(self, snapshot: Snapshot, metadata: dict[str, Any]) -> bytes | bytearray:
        """``snapshot``'s segment line, from its bytes encoded on submit if it has them."""
        if snapshot.encoded is not None:
            return segment_line_bytes(metadata, snapshot.encoded)
        return self._serializer.dumps(segment_line(snapshot.payload, metadata), snapshot.size)

    def _compress(self, lines: list[bytes | bytearray]) -> bytes | bytearray:
        """One zstd frame of ``lines``, each ended by a newline. Hundreds of MB are fed
        to the compressor about ``PIECE_BYTES`` at a time, handing the GIL over in
        between, instead of joined first (a copy that would hold the GIL as long as
        orjson did)."""
        size = sum(map(len, lines)) + len(lines)
        if size <= PIECES_ABOVE_BYTES:
            return self._compressor.compress(b"\n".join(lines) + b"\n")
        stream = self._compressor.compressobj(size=size)
        frame = bytearray()
        for piece in pieces_of_lines(lines):
            frame += stream.compress(piece)
            time.sleep(0)
        frame += stream.flush()
        return frame

    async def publish_aged(self) -> None:
        """Publish every segment open longer than ``segment_age``."""
        now = time.monotonic()
        for category in [category for category, segment in self._open.items()
                         if now - segment.opened >= self._segment_age]:
            await self.publish(category)

    def next_publish_in(self) -> float | None:
        """Seconds until the oldest open segment is ``segment_age`` old (0 if it is); None
        when none is open."""
        if not self._open:
            return None
        oldest = min(segment.opened for segment in self._open.values())
        return max(0.0, oldest + self._segment_age - time.monotonic())

    async def publish_all(self) -> None:
        """Publish every open segment (at close)."""
        for category in list(self._open):
            await self.publish(category)

    async def publish(self, category: str) -> None:
        """Rename ``category``'s open segment to its final name; the next append starts
        a new one. The segment is forgotten even if the rename fails (it stays ``.open``,
        which readers read too)."""
        segment = self._open.pop(category)
        await self._sink.rename(segment.key, names.published_name(segment.key))

    async def _start_segment(self, category: str, created: float) -> _OpenSegment:
        """A new, empty segment, created under a name no one holds (two writers given the
        same ``writer_name`` would otherwise append to one file)."""
        attempts = 1
        while True:
            sequence = await self._sequences.take(category)
            stem = names.snapshot_stem(names.file_prefix(category), created, sequence, self._tag)
            key = names.key(category, stem + names.SEGMENT_SUFFIX + names.OPEN_SUFFIX)
            try:
                await self._sink.create(key, b"")
            except FileExistsError:
                if attempts == NAME_ATTEMPTS:
                    raise
                attempts += 1
                self._sequences.forget(category)
                continue
            segment = self._open[category] = _OpenSegment(key, time.monotonic())
            return segment


def frame_groups(items: list[tuple[Snapshot, dict[str, Any]]]) -> Iterator[list[tuple[Snapshot, dict[str, Any]]]]:
    """``items`` in order, cut into groups of about ``FRAME_BYTES`` (by each snapshot's
    ``size``), one zstd frame each; a snapshot bigger than that is a group of its own."""
    group: list[tuple[Snapshot, dict[str, Any]]] = []
    grouped = 0
    for item in items:
        size = item[0].size
        if group and grouped + size > FRAME_BYTES:
            yield group
            group, grouped = [], 0
        group.append(item)
        grouped += size
    if group:
        yield group


def pieces_of_lines(lines: list[bytes | bytearray]) -> Iterator[bytes | memoryview]:
    """``lines``, each ended by a newline, as pieces of about ``PIECE_BYTES``: short lines
    joined (a hand-over per line would cost more than the compression of the backlog
    of a fallen-behind writer), long ones sliced."""
    group: list[bytes | bytearray] = []
    grouped = 0
    for line in lines:
        if len(line) > PIECE_BYTES:
            if group:
                yield b"".join(group)
            view = memoryview(line)
            for start in range(0, len(view), PIECE_BYTES):
                yield view[start:start + PIECE_BYTES]
            group, grouped = [b"\n"], 1
            continue
        group += (line, b"\n")
        grouped += len(line) + 1
        if grouped >= PIECE_BYTES:
            yield b"".join(group)
            group, grouped = [], 0
    if group:
        yield b"".join(group)
