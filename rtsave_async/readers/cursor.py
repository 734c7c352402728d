"""Incremental reads of a run that is being written: ``Run.cursor(...).poll()``.

A cursor remembers how far it has read, so a poll costs a listing of the category
folders plus reading what is new, never a re-read of whole files: per segment the byte
offset after its last complete frame (keyed by the segment's published name, so the
rename ``.open`` -> final keeps it), a set of the json and Parquet files already read, and the
published segments read to their end (not even looked at again).
"""

from __future__ import annotations

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

    def poll(self) -> list[Record]:
        """The records written since the previous poll (all so far on the first)."""
        if self.category is None:
            files = self.run.files_by_category()
        else:
            files = {self.category: self.run.data_files(self.category)}
        saves: list[Save] = []
        for category, data_files in files.items():
            for data_file in data_files:
                saves.extend(self._read_new(category, data_file))
        saves.sort(key=lambda save: save.order)
        return [save.record(record) for save in saves for record in save.records()]

    def _read_new(self, category: str, data_file: DataFile) -> list[Save]:
        key = data_file.cursor_key
        if data_file.name.kind in WHOLE_FILE_KINDS:
            if key in self._seen_files:
                return []
            self._seen_files.add(key)
            return self.run.read_whole_file(category, data_file)
        if key in self._finished_segments:
            return []
        offset = self._segment_offsets.get(key, 0)
        published = data_file.name.kind == "segment"
        if not published:
            try:
                if self.run.store.size(data_file.key) <= offset:
                    return []
            except FileNotFoundError:  # published since it was listed: read it under its final name
                if not self.run.store.exists(key):
                    return []
                published = True
        saves, self._segment_offsets[key] = self.run.read_segment(category, data_file, offset)
        if published:
            self._finished_segments.add(key)
            del self._segment_offsets[key]
        return saves
