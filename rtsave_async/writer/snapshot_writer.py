"""SnapshotWriter: a bounded queue, one writer thread running an asyncio loop, flush, close.

The training thread calls :meth:`SnapshotWriter.submit`, which stamps the snapshot and
enqueues it -- no serialization, no disk. The writer thread drains the queue in
batches, serializes each snapshot with orjson, names it and hands it to the sink.
Failures (full disk, permissions, odd values) are logged once per kind, counted and
reported by :meth:`flush`, :meth:`close` and :meth:`stats`; they never reach the
training thread.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from rtsave_async.names import JSON_SUFFIX, file_prefix, parse_sequence, snapshot_stem, validate_category
from rtsave_async.sinks.local import LocalSink
from rtsave_async.snapshot_queue import BackPressure, Snapshot, SnapshotQueue
from rtsave_async.validation import check_number, check_positive_int
from rtsave_async.writer import exit_hook
from rtsave_async.writer.serialize import ORJSON_OPTIONS, SnapshotSerializer
from rtsave_async.writer.stats import WriterStats

logger = logging.getLogger("rtsave_async")

STATS_FILE_NAME = "writer_stats.json"


class SnapshotWriter:
    """Writes snapshots to ``<save_dir>/<category>/<prefix>_<YYYYMMDD_HHMMSS>_<seq>.json``.

    Each :meth:`submit` becomes one file holding a JSON array of the submitted records.

    :param save_dir: root folder; created on the writer thread when first needed.
    :param queue_size: how many submitted snapshots (future files) may wait. Default 1024.
    :param policy: back-pressure when the queue is full: ``"block"`` (default),
        ``"drop_oldest"`` or ``"drop_newest"``; see :class:`BackPressure`.
    :param block_timeout: seconds ``submit`` waits for room under ``"block"`` before
        dropping the snapshot. Default 1.0.
    :param durable: fsync every file and its folder. Default False.
    :param exit_timeout: seconds that ``close()`` and the exit hook (normal exit,
        SIGTERM, SIGINT) wait for the queue to drain. Default 10.0.
    :param batch_size: most snapshots taken from the queue per drain. Default 64.
    :param drain_interval: seconds between the writer thread's scheduled drains; a
        quarter-full queue, :meth:`flush` and :meth:`close` wake it sooner. Longer
        intervals mean fewer GIL hand-overs with the training thread; 0 wakes it for
        every snapshot. Default 0.05.
    :param io: ``"direct"`` (default) or ``"aiofiles"``; see :class:`LocalSink`.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        *,
        queue_size: int = 1024,
        policy: BackPressure | str = BackPressure.BLOCK,
        block_timeout: float = 1.0,
        durable: bool = False,
        exit_timeout: float = 10.0,
        batch_size: int = 64,
        drain_interval: float = 0.05,
        io: str = "direct",
    ) -> None:
        if "\0" in os.fspath(save_dir):
            raise ValueError(f"save_dir {os.fspath(save_dir)!r} contains a null byte")
        check_number("exit_timeout", exit_timeout, 0, "seconds")
        check_number("drain_interval", drain_interval, 0, "seconds")
        check_positive_int("batch_size", batch_size)
        check_positive_int("queue_size", queue_size)
        self.save_dir = Path(save_dir)
        self.exit_timeout = exit_timeout
        self._batch_size = batch_size
        self._drain_interval = drain_interval
        self._sink = LocalSink(self.save_dir, durable=durable, io=io)
        wake_at = 1 if drain_interval == 0 else max(1, queue_size // 4)
        self._queue = SnapshotQueue(queue_size, policy, block_timeout, on_ready=self._wake_writer, wake_at=wake_at,
                                    on_evict=self._evicted)
        self._serializer = SnapshotSerializer()
        self._stats = WriterStats()
        self._next_sequence: dict[str, int] = {}
        self._valid_categories: set[str] = set()
        self._drops_reported = 0
        self._drops_at_flush = 0
        self._failures_reported = 0
        self._submitted = 0
        self._completed_sequence = 0
        self._done = threading.Condition(threading.RLock())
        self._stopping = False
        self._closed = False
        self._owner_pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="rtsave-writer", daemon=True)
        self._thread.start()
        exit_hook.register(self)

    # ----------------------------------------------------------------- producer side
    def submit(
        self,
        category: str,
        records: Any,
        *,
        attachments: Mapping[str, Callable[[], bytes]] | None = None,
        on_written: Callable[[Path | None], None] | None = None,
    ) -> bool:
        """Queue ``records`` (a list, or one record) as one file in ``category``.

        Cheap and never touches disk. The caller must not mutate ``records`` afterwards.

        :param records: a list of records, one record, or a function of the attachment
            list (suffix without the dot -> ``name``, ``path``, ``bytes``, ``sha256``)
            returning the records, called on the writer thread once the attachments
            are stored.
        :param attachments: file-name suffix (e.g. ``".zip"``) -> a function returning the
            bytes, called on the writer thread (so it must only read copies). Each is
            stored beside the JSON file under the same name stem, before it; the JSON
            file is written last, so it only ever points at complete files.
        :param on_written: called once for an accepted snapshot: on the writer thread with
            the JSON file's path once everything is stored, or with None if it failed;
            with None on the submitting thread if ``drop_oldest`` evicted it.
        Returns False when the back-pressure policy refused the snapshot (``on_written``
        is then never called).
        Raises ``ValueError`` for an unsafe category name and ``RuntimeError`` after
        :meth:`close` or in a forked child.
        """
        if self._owner_pid != os.getpid():
            raise RuntimeError("this SnapshotWriter belongs to the parent process; create a new one after fork")
        if self._closed:
            raise RuntimeError(f"SnapshotWriter for {self.save_dir} is closed")
        if category not in self._valid_categories:
            self._valid_categories.add(validate_category(category))
        payload = records if isinstance(records, list) or callable(records) else [records]
        self._submitted += 1
        snapshot = Snapshot(category, payload, time.time(), dict(attachments or {}), on_written)
        accepted = self._queue.put(snapshot)
        if self._queue.dropped.total() != self._drops_reported:
            self._report_drops()
        return accepted

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every snapshot submitted so far is stored or has failed.

        :param timeout: seconds to wait at most; None waits as long as it takes.
        :return: True when all of them are on disk and none failed or was dropped since
            the previous flush; False on timeout, failure or drop (see ``stats()``), and
            in a forked child.
        """
        if self._owner_pid != os.getpid():
            return False
        target = self._queue.last_sequence
        if self._completed_sequence < target:
            self._wake_writer()
        with self._done:
            drained = self._done.wait_for(
                lambda: self._completed_sequence >= target or not self._thread.is_alive(), timeout
            )
        drained = drained and self._completed_sequence >= target
        failures, drops = sum(self._stats.failed.values()), self._queue.dropped.total()
        clean = failures == self._failures_reported and drops == self._drops_at_flush
        self._failures_reported, self._drops_at_flush = failures, drops
        if not drained:
            logger.warning("rtsave_async: %d snapshot(s) for %s not yet written after %s s",
                           self.stats()["pending"], self.save_dir, timeout)
        return drained and clean

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Flush, write ``writer_stats.json``, stop the thread and return the stats.

        :param timeout: seconds to wait for the queue to drain; default ``exit_timeout``.
        Safe to call more than once: while the thread is still writing, each call waits
        again, and the exit hook keeps covering the writer until the thread has ended.
        """
        if self._owner_pid != os.getpid() or not self._thread.is_alive() and not exit_hook.covers(self):
            return self.stats()
        timeout = self.exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._closed:
            self._closed = True
            self.flush(timeout)
            self._stopping = True
            self._wake_writer()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            logger.warning("rtsave_async: %s still writing %d snapshot(s) after %s s; waiting again at exit",
                           self.save_dir, self.stats()["pending"], timeout)
            return self.stats()
        exit_hook.unregister(self)
        stats = self.stats()
        if stats["failed"] or stats["dropped"]:
            logger.warning(
                "rtsave_async: %s closed with %d failed and %d dropped snapshot(s): %s",
                self.save_dir, stats["failed"], stats["dropped"], "; ".join(stats["errors"]) or "queue full",
            )
        return stats

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters since start. ``submitted == written + failed + dropped + pending``."""
        stats = self._stats
        return {
            "save_dir": str(self.save_dir),
            "policy": self._queue.policy.value,
            "queue_capacity": self._queue.capacity,
            "submitted": self._submitted,
            "written": sum(stats.written.values()),
            "failed": sum(stats.failed.values()),
            "dropped": self._queue.dropped.total(),
            "pending": self._submitted - sum(stats.written.values()) - sum(stats.failed.values())
            - self._queue.dropped.total(),
            "queue_depth": len(self._queue),
            "peak_queue_depth": self._queue.peak_depth,
            "bytes_written": stats.bytes_written,
            "nonfinite_values": self._serializer.nonfinite,
            "placeholders": self._serializer.placeholders,
            "written_by_category": dict(stats.written),
            "failed_by_category": dict(stats.failed),
            "dropped_by_category": dict(self._queue.dropped),
            "serialize_latency_us": stats.serialize_latency.percentiles_us(),
            "write_latency_us": stats.write_latency.percentiles_us(),
            "errors": list(stats.errors),
        }

    def _report_drops(self) -> None:
        dropped = self._queue.dropped
        if self._drops_reported == 0:
            logger.warning(
                "rtsave_async: queue for %s is full (%d, policy %s); dropping snapshots, counted in stats",
                self.save_dir, self._queue.capacity, self._queue.policy.value,
            )
        self._drops_reported = dropped.total()

    def _wake_writer(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop already closed: nothing left to wake
            pass

    def _evicted(self, snapshot: Snapshot) -> None:
        """``drop_oldest`` evicted an accepted snapshot: its ``on_written`` hears None."""
        if snapshot.on_written is not None:
            self._call_on_written(snapshot, None)

    def _call_on_written(self, snapshot: Snapshot, path: Path | None) -> None:
        try:
            snapshot.on_written(path)
        except Exception as exc:  # a caller's hook must not stop the writer or training
            self._report_error(exc, f"the on_written hook of a {snapshot.category} snapshot failed: {exc!r}")

    def _disown(self) -> None:
        """In a forked child: forget the parent's pending snapshots; never write them."""
        self._queue.forget_after_fork()
        self._done = threading.Condition(threading.RLock())
        self._closed = True

    # ------------------------------------------------------------------ writer side
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._drain())
        finally:
            self._loop.close()
            with self._done:
                self._done.notify_all()

    async def _drain(self) -> None:
        try:
            self._sink.clean_stale_temps()
        except OSError as exc:
            self._report_error(exc, f"could not clean temp files in {self.save_dir}: {exc.strerror or exc}")
        while True:
            batch = self._queue.take_batch(self._batch_size)
            if batch:
                for snapshot in batch:
                    await self._write(snapshot)
                with self._done:
                    self._completed_sequence = batch[-1].sequence
                    self._done.notify_all()
            elif self._stopping:
                break
            else:
                await self._sleep_until_woken()
        await self._write_stats_file()

    async def _sleep_until_woken(self) -> None:
        """Until a wake-up call, or at most ``drain_interval`` seconds when it is set."""
        try:
            await asyncio.wait_for(self._wake.wait(), self._drain_interval or None)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def _write(self, snapshot: Snapshot) -> None:
        category = snapshot.category
        started = time.perf_counter_ns()
        try:
            path, size, serialize_ns = await self._store(snapshot)
        except OSError as exc:
            where = exc.filename or self.save_dir / category
            self._report_error(exc, f"could not write {where}: {exc.strerror or exc}", category)
            path = None
        except Exception as exc:  # an attachment encoder failed; never let it kill the loop
            self._report_error(exc, f"could not encode a {category} snapshot: {exc!r}", category)
            path = None
        else:
            self._stats.record_written(category, size, serialize_ns, time.perf_counter_ns() - started - serialize_ns)
        if snapshot.on_written is not None:
            self._call_on_written(snapshot, path)

    async def _store(self, snapshot: Snapshot) -> tuple[Path, int, int]:
        """Encode, then write the attachments and the JSON file last, under the next free name.

        Returns the JSON file's path, the bytes written and the nanoseconds spent
        encoding. A name taken by another writer is skipped (the attachments written
        under it are removed first).
        """
        category = snapshot.category
        prefix = file_prefix(category)
        encode_started = time.perf_counter_ns()
        blobs = {suffix: encode() for suffix, encode in snapshot.attachments.items()}
        encode_ns = time.perf_counter_ns() - encode_started
        while True:
            if category not in self._next_sequence:
                self._next_sequence[category] = self._first_free_sequence(category, prefix)
            stem = snapshot_stem(prefix, snapshot.created, self._next_sequence[category], None)
            self._next_sequence[category] += 1
            stored: list[str] = []
            try:
                for suffix, blob in blobs.items():
                    await self._sink.put(category, stem + suffix, blob)
                    stored.append(stem + suffix)
                serialize_started = time.perf_counter_ns()
                records = _records_with_files(snapshot.payload, self._sink.root / category, stem, blobs)
                data = self._serializer.dumps(records)
                encode_ns += time.perf_counter_ns() - serialize_started
                await self._sink.put(category, stem + JSON_SUFFIX, data)
            except FileExistsError:
                self._sink.remove(category, stored)
                del self._next_sequence[category]  # rescan the folder
                continue
            except BaseException:
                self._sink.remove(category, stored)  # no JSON points at them: never leave them behind
                raise
            size = len(data) + sum(map(len, blobs.values()))
            return self._sink.root / category / (stem + JSON_SUFFIX), size, encode_ns

    def _first_free_sequence(self, category: str, prefix: str) -> int:
        taken = (parse_sequence(name, prefix) for name in self._sink.existing_names(category))
        return max((sequence for sequence in taken if sequence is not None), default=0) + 1

    async def _write_stats_file(self) -> None:
        data = orjson.dumps(self.stats(), option=ORJSON_OPTIONS | orjson.OPT_INDENT_2)
        try:
            await self._sink.replace("", STATS_FILE_NAME, data)
        except OSError as exc:
            self._report_error(exc, f"could not write {exc.filename or self.save_dir / STATS_FILE_NAME}: "
                                    f"{exc.strerror or exc}")

    def _report_error(self, exc: BaseException, message: str, category: str | None = None) -> None:
        """Count (for a snapshot's ``category``) and log the first error of each kind."""
        code = getattr(exc, "errno", None)
        # One log line per kind of disk error (a full or read-only disk fails every category alike).
        kind = (type(exc).__name__, code) if isinstance(exc, OSError) else (category, type(exc).__name__)
        if category is None:
            first = self._stats.record_error(kind, message)
        else:
            first = self._stats.record_failure(category, kind, message)
        if first:
            logger.error("rtsave_async: %s (%s); later errors of this kind are only counted",
                         message, errno.errorcode.get(code, type(exc).__name__))


def _records_with_files(payload: Any, folder: Path, stem: str, blobs: Mapping[str, bytes]) -> Any:
    """The records to write: ``payload``, or for a callable payload its result given the
    attachment list (suffix without the dot -> name, path, bytes, sha256)."""
    if not callable(payload):
        return payload
    files = {
        suffix.lstrip("."): {
            "name": stem + suffix, "path": str(folder / (stem + suffix)),
            "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
        }
        for suffix, blob in blobs.items()
    }
    return payload(files)
