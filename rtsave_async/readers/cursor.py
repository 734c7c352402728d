"""Incremental reads of a run that is being written: ``Run.cursor(...).poll()``.

A cursor remembers how far it has read, so a poll costs a listing of the category
folders plus reading what is new, never a re-read of whole files: per segment the byte
offset after its last complete frame (keyed by the segment's published name, so the
rename ``.open`` -> final keeps it), a set of the json and Parquet files already read, and the
published segments read to their end (not even looked at again).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from rtsave_async.readers.run import WHOLE_FILE_KINDS, Record, Save

if TYPE_CHECKING:
    from rtsave_async.readers.run import DataFile, Run


class RunCursor:
    """What is new in ``run`` (one ``category``, or all of them) since the last :meth:`poll`.

    Every record is returned exactly once, in write order within a poll, across
    segment rotations, new files, new writers and new categories. The first poll
    returns everything written so far. Records are returned as written: lineage
    (:meth:`Run.records`' ``branches``) is a view of a whole run, not of a stream.
    """

    def __init__(self, run: Run, category: str | None = None):
        self.run = run
        self.category = category
        self._segment_offsets: dict[str, int] = {}
        self._finished_segments: set[str] = set()
        self._seen_files: set[str] = set()
        #: False when the last :meth:`poll` ran out of its budget before looking at every file.
        self.caught_up = True
        #: Decompressed bytes of a segment a poll with a budget reads at a time (a few
        #: tens of thousands of records; a segment may hold millions).
        self.segment_bytes_per_read = 8 * 1024 * 1024

    def poll(self, budget: float | None = None) -> list[Record]:
        """The records written since the previous poll (all so far on the first).

        :param budget: seconds after which no further file is read (but at least one with
            new records; the categories take turns, a file each, so all of them advance);
            the next poll goes on from there, and :attr:`caught_up` says whether this one
            may have stopped short. Default None: no limit.
        """
        if self.category is None:
            files = self.run.files_by_category()
        else:
            files = {self.category: self.run.data_files(self.category)}
        deadline = None if budget is None else time.monotonic() + budget
        turns = deque((category, iter(data_files)) for category, data_files in files.items())
        saves: list[Save] = []
        caught_up = True  # set once the poll is over: another thread may be asking meanwhile
        while turns:
            category, data_files = turns.popleft()
            data_file = next(data_files, None)
            if data_file is None:
                continue
            new, whole = self._read_new(category, data_file,
                                         None if deadline is None else self.segment_bytes_per_read)
            saves.extend(new)
            if not whole:  # the rest of that segment comes before the category's later files: next poll
                caught_up = False
            else:
                turns.append((category, data_files))
            if new and deadline is not None and time.monotonic() >= deadline:  # after new records: progress
                caught_up = False
                break
        self.caught_up = caught_up
        saves.sort(key=lambda save: save.order)
        return [save.record(record) for save in saves for record in save.records()]

    def _read_new(self, category: str, data_file: DataFile, max_decoded: int | None) -> tuple[list[Save], bool]:
        """The new saves of ``data_file``, and False if a segment has more to read
        (``max_decoded`` bytes of it were read)."""
        key = data_file.cursor_key
        if data_file.name.kind in WHOLE_FILE_KINDS:
            if key in self._seen_files:
                return [], True
            self._seen_files.add(key)
            return self.run.read_whole_file(category, data_file), True
        if key in self._finished_segments:
            return [], True
        offset = self._segment_offsets.get(key, 0)
        published = data_file.name.kind == "segment"
        if not published:
            try:
                if self.run.store.size(data_file.key) <= offset:
                    return [], True
            except FileNotFoundError:  # published since it was listed: read it under its final name
                if not self.run.store.exists(key):
                    return [], True
                published = True
        saves, self._segment_offsets[key], more = self.run.read_segment(category, data_file, offset, max_decoded)
        if more:
            return saves, False
        if published:
            self._finished_segments.add(key)
            del self._segment_offsets[key]
        return saves, True
