"""One file per save: ``<category>/<prefix>_<YYYYMMDD_HHMMSS>_<seq>_<tag>.json``.

The file holds what was submitted (a JSON array of records, or one object), each
record carrying ``_rtsave``. Attachments (a checkpoint's model, buffers, state) are
stored first under the same stem; the JSON is written last, so it only ever points at
complete files. Both formats store checkpoints this way.
"""

from __future__ import annotations

import errno
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from rtsave_async import names
from rtsave_async.formats.metadata import with_metadata
from rtsave_async.sinks.base import Sink
from rtsave_async.snapshot_queue import Snapshot
from rtsave_async.formats.serialize import SnapshotSerializer

NAME_ATTEMPTS = 8  # a name taken by another writer with the same id: rescan and retry, this often


class SequenceCounter:
    """The next free ``seq`` per category: one above the highest found at first use."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._next: dict[str, int] = {}

    async def take(self, category: str) -> int:
        """Reserve the next sequence number of ``category``."""
        if category not in self._next:
            self._next[category] = await self._first_free(category)
        sequence = self._next[category]
        self._next[category] += 1
        return sequence

    def forget(self, category: str) -> None:
        """Rescan ``category`` at the next :meth:`take` (a name was taken meanwhile)."""
        self._next.pop(category, None)

    async def _first_free(self, category: str) -> int:
        prefix = names.file_prefix(category)
        parsed = (names.parse_name(names.split_key(key)[1]) for key in await self._sink.list(category))
        return max((name.seq for name in parsed if name is not None and name.prefix == prefix), default=0) + 1


class FileStore:
    """Stores snapshots as files through ``sink``, named with the writer's ``tag``."""

    def __init__(self, sink: Sink, tag: str, serializer: SnapshotSerializer, sequences: SequenceCounter) -> None:
        self._sink = sink
        self._tag = tag
        self._serializer = serializer
        self._sequences = sequences

    async def reserve_stem(self, snapshot: Snapshot) -> str:
        """The name stem ``snapshot`` will be stored under (reserved in submit order)."""
        sequence = await self._sequences.take(snapshot.category)
        return names.snapshot_stem(names.file_prefix(snapshot.category), snapshot.created, sequence, self._tag)

    async def store(self, snapshot: Snapshot, stem: str, metadata: dict[str, Any]) -> tuple[str, int, int]:
        """Encode, then store the attachments and the JSON file last.

        Returns the JSON file's key, the bytes stored and the nanoseconds spent
        encoding. A name found taken is given up for the next free one (the
        attachments stored under it are removed first).
        """
        category = snapshot.category
        encode_started = time.perf_counter_ns()
        blobs = {suffix: encode() for suffix, encode in snapshot.attachments.items()}
        encode_ns = time.perf_counter_ns() - encode_started
        attempts = 1
        while True:
            stored: list[str] = []
            try:
                for suffix, blob in blobs.items():
                    await self._sink.create(names.key(category, stem + suffix), blob)
                    stored.append(names.key(category, stem + suffix))
                await self._check_stored(stored, blobs)
                serialize_started = time.perf_counter_ns()
                records = with_metadata(self._records_with_files(snapshot.payload, category, stem, blobs), metadata)
                data = self._serializer.dumps(records, None if callable(snapshot.payload) else snapshot.size)
                encode_ns += time.perf_counter_ns() - serialize_started
                json_key = names.key(category, stem + names.JSON_SUFFIX)
                await self._sink.create(json_key, data)
                if stored:  # removed while the JSON was being stored: take the JSON back
                    stored.insert(0, json_key)
                    await self._check_stored(stored[1:], blobs)
            except FileExistsError:
                await self._delete(stored)
                if attempts == NAME_ATTEMPTS:
                    raise
                attempts += 1
                self._sequences.forget(category)
                stem = await self.reserve_stem(snapshot)
                continue
            except BaseException:
                await self._delete(stored)  # no JSON points at them: never leave them behind
                raise
            return json_key, len(data) + sum(map(len, blobs.values())), encode_ns

    async def _check_stored(self, keys: list[str], blobs: Mapping[str, bytes]) -> None:
        """Around the JSON that lists them: every attachment is still there, whole (a
        save_dir removed meanwhile would otherwise leave a JSON listing missing files)."""
        for key, blob in zip(keys, blobs.values()):
            try:
                size = await self._sink.size(key)
            except FileNotFoundError:
                size = None
            if size != len(blob):
                found = "missing" if size is None else f"{size} bytes instead of {len(blob)}"
                raise OSError(errno.ENOENT, f"an attachment stored before its JSON is {found}; "
                              "the save is not published", self._sink.url(key))

    async def _delete(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await self._sink.delete(key)
            except OSError:
                pass  # the store failed already; that error is the one reported

    def _records_with_files(self, payload: Any, category: str, stem: str, blobs: Mapping[str, bytes]) -> Any:
        """``payload``, or for a callable payload its result given the attachment list
        (suffix without the dot -> name, path, bytes, sha256)."""
        if not callable(payload):
            return payload
        files = {
            suffix.lstrip("."): {
                "name": stem + suffix, "path": self._sink.url(names.key(category, stem + suffix)),
                "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
            }
            for suffix, blob in blobs.items()
        }
        return payload(files)
