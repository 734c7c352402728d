"""SnapshotWriter: a bounded queue, one writer thread running an asyncio loop, flush, close.

The training thread calls :meth:`SnapshotWriter.submit`, which stamps the snapshot and
enqueues it -- no serialization, no storage. The writer thread drains the queue in
batches, serializes each snapshot with orjson, names it and hands it to the sink, in the
chosen format (:mod:`rtsave_async.formats`). Failures (full disk, permissions, odd
values) are logged once per kind, counted and reported by :meth:`flush`, :meth:`close`
and :meth:`stats`; they never reach the training thread.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rtsave_async import names
from rtsave_async.formats import JSON, JSONL_ZST, validate_format
from rtsave_async.formats.files import FileStore, SequenceCounter
from rtsave_async.formats.metadata import snapshot_metadata
from rtsave_async.formats.segments import DEFAULT_SEGMENT_AGE, DEFAULT_SEGMENT_BYTES, SegmentStore
from rtsave_async.formats.serialize import SnapshotSerializer, encode_plain
from rtsave_async.remote.urls import save_location
from rtsave_async.sinks.base import Sink
from rtsave_async.sinks.local import LocalSink
from rtsave_async.sinks.spooled import SpooledSink
from rtsave_async.snapshot_queue import DEFAULT_QUEUE_BYTES, BackPressure, Snapshot, SnapshotQueue, estimate_bytes
from rtsave_async.upload.uploader import DEFAULT_UPLOAD_INTERVAL
from rtsave_async.validation import check_number, check_positive_int
from rtsave_async.writer import exit_hook, manifest
from rtsave_async.writer.stats import WriterStats

logger = logging.getLogger("rtsave_async")

STATS_FILE_NAME = names.STATS_KEY
WRITER_THREAD_NAME = "rtsave-writer"  # the writer thread's name, as profilers and thread dumps show it
STATS_REFRESH_SECONDS = 2.0  # how often writers/<writer_id>.json is refreshed while writing
ENCODE_AT_SUBMIT_BYTES = 64 * 1024  # segment lines estimated this big at most are serialized on submit
#: A category whose last save encoded on submit to at most this many bytes has its next save encoded
#: without estimating its size first: one category's saves are alike (the same records each time).
ENCODE_UNESTIMATED_BYTES = ENCODE_AT_SUBMIT_BYTES // 4
_JOIN_MARGIN = 0.25  # seconds of close()'s timeout kept for the thread to end after the sink's finish
_writer_ids_in_use: set[str] = set()  # in this process: two writers started in one second get distinct ids


class SnapshotWriter:
    """Writes snapshots under ``save_dir``, one folder per category, in ``format``.

    With ``format="json"`` each :meth:`submit` becomes one file
    ``<category>/<prefix>_<YYYYMMDD_HHMMSS>_<seq>_<tag>.json`` holding a JSON array of the
    submitted records; with ``"jsonl.zst"`` one line in the category's open segment.

    :param save_dir: root folder; created when the writer starts.
    :param queue_size: how many submitted snapshots may wait. Default 1024.
    :param queue_bytes: how many bytes they may hold, as estimated on the training thread
        (numpy arrays, tensors and strings by their size, plus 64 per record; see
        :func:`~rtsave_async.snapshot_queue.estimate_bytes`). A single larger snapshot is
        still taken, once the queue is empty. Default 512 MiB.
    :param policy: back-pressure when the queue is full: ``"block"`` (default),
        ``"drop_oldest"`` or ``"drop_newest"``; see :class:`BackPressure`.
    :param block_timeout: seconds ``submit`` waits for room under ``"block"`` before
        dropping the snapshot. Default 1.0.
    :param durable: fsync every file, append and folder (local sink). Default False.
    :param exit_timeout: seconds that ``close()`` and the exit hook (normal exit,
        SIGTERM, SIGINT) wait for the queue to drain. Default 10.0.
    :param batch_size: most snapshots taken from the queue per drain. With
        ``"jsonl.zst"`` a drain's saves of one category become one zstd frame, one
        append, and when more are waiting (the writer has fallen behind) a drain takes
        all of them, so that a slow store is paid once per drain, not once per save.
        Default 64.
    :param drain_interval: seconds between the writer thread's scheduled drains while
        snapshots keep coming; a queue a quarter full (by count or bytes), :meth:`flush`
        and :meth:`close` wake it sooner. Longer intervals mean fewer GIL hand-overs with
        the training thread; 0 wakes it for every snapshot. A writer that found nothing
        to do sleeps until a submit arms a drain ``drain_interval`` later, waking
        meanwhile only for its housekeeping (every ``STATS_REFRESH_SECONDS``, 2): each
        idle wake-up takes the GIL from the training thread. Default 0.25 (saving every
        step, the training thread waits a third to a half less often than at 0.05: a
        drain takes the GIL back a dozen times, and while the writer waits for it the
        training thread pays for every release).
    :param io: ``"direct"`` (default) or ``"aiofiles"``; see :class:`LocalSink`.
    :param format: ``"json"`` (default) or ``"jsonl.zst"``; see :mod:`rtsave_async.formats`.
        A save_dir keeps the format of its first writer.
    :param segment_bytes: ``"jsonl.zst"``: a segment is published once it holds this
        many compressed bytes (at least 1 MiB). Default 64 MiB.
    :param segment_age: ``"jsonl.zst"``: ... or once it is this many seconds old. Default 300.
    :param writer_name: this writer's id in the data and manifests; default
        ``<host>-<pid>-<YYYYMMDDTHHMMSSZ>`` of its start.
    :param max_in_flight: most file stores the writer awaits at once (a slow, e.g.
        remote, sink overlaps them; ``"json"`` writes one file per save, so this bounds
        how many saves per store latency it can absorb; stores in flight also hold
        at most ``queue_bytes``, but for a lone bigger one). Default 32.
    :param sink: where to store; default ``LocalSink(save_dir, durable, io)``, or for a
        URL ``save_dir`` a :class:`~rtsave_async.sinks.spooled.SpooledSink`.
    :param spool_dir: URL ``save_dir`` only: the local folder every store goes to first
        (then it is uploaded in the background); default a folder under
        ``~/.cache/rtsave_async/spool`` derived from the URL.
    :param storage_options: URL ``save_dir`` only: options of the fsspec file system
        (never stored or logged); default the backend's environment and config
        (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws/config``).
    :param upload_interval: URL ``save_dir`` only: seconds between uploads of an open
        segment's new bytes (how far a remote reader lags). Default 2.

    A ``save_dir`` such as ``"s3://bucket/prefix/run"`` (any fsspec URL; S3 needs the
    ``s3`` extra) is written through the spool: ``submit`` never waits for the
    network; network faults are retried with backoff; ``close`` and the exit hook wait
    for the upload up to ``exit_timeout``, then log what is only local and the
    ``rtsave sync`` command that finishes it.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        *,
        queue_size: int = 1024,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        policy: BackPressure | str = BackPressure.BLOCK,
        block_timeout: float = 1.0,
        durable: bool = False,
        exit_timeout: float = 10.0,
        batch_size: int = 64,
        drain_interval: float = 0.25,
        io: str = "direct",
        format: str = JSON,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        segment_age: float = DEFAULT_SEGMENT_AGE,
        writer_name: str | None = None,
        max_in_flight: int = 32,
        sink: Sink | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        upload_interval: float = DEFAULT_UPLOAD_INTERVAL,
    ) -> None:
        if "\0" in os.fspath(save_dir):
            raise ValueError(f"save_dir {os.fspath(save_dir)!r} contains a null byte")
        check_number("exit_timeout", exit_timeout, 0, "seconds")
        check_number("drain_interval", drain_interval, 0, "seconds")
        check_positive_int("batch_size", batch_size)
        check_positive_int("queue_size", queue_size)
        check_positive_int("queue_bytes", queue_bytes)
        check_positive_int("max_in_flight", max_in_flight)
        check_number("upload_interval", upload_interval, 0.05, "seconds")
        self.format = validate_format(format)
        #: The folder, or the URL (a str) for a run in object storage.
        self.save_dir = save_location(save_dir)
        self.exit_timeout = exit_timeout
        self._batch_size = batch_size
        self._drain_interval = drain_interval
        if not isinstance(self.save_dir, str) and (spool_dir is not None or storage_options):
            raise ValueError(f"spool_dir and storage_options are only for a URL save_dir (s3://...), not "
                             f"{self.save_dir}")
        if sink is None and isinstance(self.save_dir, str):
            sink = SpooledSink(self.save_dir, spool_dir, storage_options=storage_options,
                               upload_interval=upload_interval, durable=durable, io=io)
        self._sink = sink if sink is not None else LocalSink(self.save_dir, durable=durable, io=io)
        if not isinstance(self._sink, Sink):
            raise ValueError(f"sink must be a rtsave_async.sinks.Sink, got {type(self._sink).__name__}")
        if self.format == JSONL_ZST and not self._sink.supports_append:
            raise ValueError(f"format {JSONL_ZST!r} needs a sink that can append; {type(self._sink).__name__} cannot")
        self._started = time.time()
        self.writer_id = self._new_writer_id(writer_name)
        self._serializer = SnapshotSerializer()
        self._submit_nonfinite = 0  # NaN/Inf in payloads encoded on submit (any producer thread)
        self._encoded_on_submit = 0  # under _submit_counts too
        self._submit_counts = threading.Lock()
        #: Categories whose last save encoded on submit to at most ENCODE_UNESTIMATED_BYTES.
        self._small_categories: set[str] = set()
        sequences = SequenceCounter(self._sink)
        tag = names.writer_tag(self.writer_id)
        self._files = FileStore(self._sink, tag, self._serializer, sequences)
        self._segments = (SegmentStore(self._sink, tag, self._serializer, sequences, segment_bytes, segment_age)
                          if self.format == JSONL_ZST else None)
        wake_at = 1 if drain_interval == 0 else max(1, queue_size // 4)
        self._queue = SnapshotQueue(queue_size, policy, block_timeout, on_ready=self._wake_writer, wake_at=wake_at,
                                    on_evict=self._evicted, max_bytes=queue_bytes, on_first=self._drain_soon)
        self._stats = WriterStats()
        self._info = manifest.writer_info(self.writer_id, self.format, self._started)
        self._valid_categories: set[str] = set()
        self._snapshot_counts: dict[str, int] = {}  # category -> saves numbered so far (_rtsave.seq)
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # queue sequence -> its file store
        self._unfinished: set[int] = set()  # queue sequences taken, not yet stored or failed
        self._max_in_flight = max_in_flight
        self._in_flight_bytes = 0  # estimated bytes of the snapshots in self._in_flight
        self._taken_sequence = 0
        self._stats_written_at = 0.0
        self._drops_warned = False
        self._drops_at_flush = 0
        self._failures_reported = 0
        self._submitted = 0
        self._completed_sequence = 0
        self._done = threading.Condition(threading.RLock())
        self._stopping = False
        self._stop_deadline: float | None = None  # time.monotonic() by which close() wants the thread ended
        self._closed = False
        self._died: BaseException | None = None  # what ended the writer thread early
        self._owner_pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        try:
            self._loop.run_until_complete(self._start())
        except BaseException:
            self._loop.close()
            raise
        self._thread = threading.Thread(target=self._run, name=WRITER_THREAD_NAME, daemon=True)
        self._thread.start()
        exit_hook.register(self)

    @staticmethod
    def _new_writer_id(writer_name: str | None) -> str:
        if writer_name is not None:
            return names.validate_writer_name(writer_name)
        base = writer_id = names.default_writer_id(time.time())
        number = 1
        while writer_id in _writer_ids_in_use:
            number += 1
            writer_id = f"{base}-{number}"
        _writer_ids_in_use.add(writer_id)
        return writer_id

    @property
    def drain_interval(self) -> float:
        """Seconds between the writer thread's scheduled drains (the ``drain_interval`` option)."""
        return self._drain_interval

    @property
    def sink(self) -> Sink:
        """Where this writer stores (for jobs that run on its loop, e.g. retention)."""
        return self._sink

    # ----------------------------------------------------------------- producer side
    def submit(
        self,
        category: str,
        records: Any,
        *,
        attachments: Mapping[str, Callable[[], bytes]] | None = None,
        on_written: Callable[[str | None], Awaitable[None] | None] | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Queue ``records`` (a list, or one record) as one save in ``category``.

        Cheap and never touches storage. The caller must not mutate ``records`` afterwards.
        With ``format="jsonl.zst"`` a save of plain values estimated at most
        ``ENCODE_AT_SUBMIT_BYTES`` (64 KiB) is serialized here (orjson, microseconds).

        :param records: a list of records, one record, or a function of the attachment
            list (suffix without the dot -> ``name``, ``path``, ``bytes``, ``sha256``)
            returning the records, called on the writer thread once the attachments
            are stored.
        :param attachments: file-name suffix (e.g. ``".zip"``) -> a function returning the
            bytes, called on the writer thread (so it must only read copies). Each is
            stored beside the JSON file under the same name stem, before it; the JSON
            file is written last, so it only ever points at complete files.
        :param on_written: called once for an accepted snapshot: on the writer thread with
            the stored file's (or segment's) ``sink.url`` once everything is stored, or
            with None if it failed; with None on the submitting thread if
            ``drop_oldest`` evicted it. If it returns an awaitable, the writer awaits
            it on its loop (e.g. retention through :attr:`sink`).
        :param deadline: under the ``"block"`` policy, the ``time.monotonic()`` at which a
            submit waiting for room gives up, instead of ``block_timeout`` from now (the
            exit hooks submit held saves within their own deadline); default None
        With ``format="jsonl.zst"``, snapshots with attachments or a callable payload,
        and every checkpoint, are still stored as files.
        Returns False when the back-pressure policy refused the snapshot (``on_written``
        is then never called).
        Raises ``ValueError`` for an unsafe category name and ``RuntimeError`` after
        :meth:`close` or in a forked child.
        """
        if self._closed:  # not os.getpid() per submit: a system call, several µs cold; a fork child is closed
            if self._owner_pid != os.getpid():
                raise RuntimeError("this SnapshotWriter belongs to the parent process; create a new one after fork")
            raise RuntimeError(f"SnapshotWriter for {self.save_dir} is closed")
        if category not in self._valid_categories:
            self._valid_categories.add(names.validate_category(category))
        payload = records if isinstance(records, list) or callable(records) else [records]
        self._submitted += 1
        if self._died is not None:  # nothing would ever store it: fail it now, loudly
            self._report_death(category)
            return False
        snapshot = Snapshot(category, payload, time.time(), dict(attachments) if attachments else {}, on_written)
        if self._segments is not None and SegmentStore.takes(snapshot):
            self._encode_small_plain(snapshot)
        accepted = self._queue.put(snapshot, deadline)
        if not accepted:
            self._warn_drops_once()
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
        if self._died is not None:
            self._report_death()
            return False
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
        # Also when an earlier close was cut short (a signal inside its flush): the thread
        # still ends as soon as the queue is drained, and writes the stats on its way out.
        self._stop_deadline = deadline
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
            "writer": self.writer_id,
            "format": self.format,
            "policy": self._queue.policy.value,
            "queue_capacity": self._queue.capacity,
            "queue_bytes_capacity": self._queue.max_bytes,
            "submitted": self._submitted,
            "written": sum(stats.written.values()),
            "failed": sum(stats.failed.values()),
            "dropped": self._queue.dropped.total(),
            "pending": self._submitted - sum(stats.written.values()) - sum(stats.failed.values())
            - self._queue.dropped.total(),
            "queue_depth": len(self._queue),
            "peak_queue_depth": self._queue.peak_depth,
            "peak_queue_bytes": self._queue.peak_bytes,
            "stores": stats.stores,
            "bytes_written": stats.bytes_written,
            "nonfinite_values": self._serializer.nonfinite + self._submit_nonfinite,
            "encoded_on_submit": self._encoded_on_submit,
            "placeholders": self._serializer.placeholders,
            "written_by_category": dict(stats.written),
            "failed_by_category": dict(stats.failed),
            "dropped_by_category": dict(self._queue.dropped),
            "serialize_latency_us": stats.serialize_latency.percentiles_us(),
            "write_latency_us": stats.write_latency.percentiles_us(),
            "thread_cpu_seconds": round(stats.thread_cpu_seconds, 3),
            "errors": list(stats.errors),
            "writer_died": self._died is not None,
            **({"upload": upload} if (upload := self._sink.upload_status()) is not None else {}),
        }

    def _encode_small_plain(self, snapshot: Snapshot) -> None:
        """Serialize a segment line's payload here, on the submitting thread, if it is
        plain and estimated at most ``ENCODE_AT_SUBMIT_BYTES``: orjson holds the GIL
        while it runs, and on the writer thread it would make the training thread wait
        for it; bigger or odd payloads are left to the writer thread (in pieces, repaired).

        The estimate walks the payload in Python, which takes longer than orjson does for
        a small save; after a save of its category encoded to at most
        ``ENCODE_UNESTIMATED_BYTES``, a save is encoded without it. A save much bigger
        than the one before it then costs the submitting thread its encoding once (about
        a millisecond per MB), and its category is estimated again."""
        category = snapshot.category
        if category in self._small_categories:
            encoded = encode_plain(snapshot.payload)
        else:
            size = estimate_bytes(snapshot.payload)
            encoded = encode_plain(snapshot.payload) if size <= ENCODE_AT_SUBMIT_BYTES else None
            if encoded is None:
                snapshot.size = size
                return
        if encoded is None:  # not plain: the writer thread repairs it
            self._small_categories.discard(category)
            return
        snapshot.encoded, nonfinite = encoded
        snapshot.payload, snapshot.size = None, len(snapshot.encoded)
        if snapshot.size <= ENCODE_UNESTIMATED_BYTES:
            self._small_categories.add(category)
        else:
            self._small_categories.discard(category)
        with self._submit_counts:
            self._encoded_on_submit += 1
            self._submit_nonfinite += nonfinite

    def _warn_drops_once(self) -> None:
        """The queue refused or evicted a snapshot: say so the first time (all are counted in stats)."""
        if not self._drops_warned:
            self._drops_warned = True
            logger.warning(
                "rtsave_async: queue for %s is full (%d, policy %s); dropping snapshots, counted in stats",
                self.save_dir, self._queue.capacity, self._queue.policy.value,
            )

    def _wake_writer(self) -> None:
        self._on_loop(self._wake.set)

    def _drain_soon(self) -> None:
        """A submit to an idle writer: drain ``drain_interval`` from now (batching what follows)."""
        self._on_loop(self._arm_drain)

    def _arm_drain(self) -> None:
        self._loop.call_later(self._drain_interval, self._wake.set)

    def _on_loop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the writer's loop, from any thread."""
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # loop already closed: nothing left to wake
            pass

    def _evicted(self, snapshot: Snapshot) -> None:
        """``drop_oldest`` evicted an accepted snapshot: its ``on_written`` hears None."""
        self._warn_drops_once()
        if snapshot.on_written is not None:
            self._call_on_written(snapshot, None)

    def _call_on_written(self, snapshot: Snapshot, url: str | None) -> Awaitable[None] | None:
        try:
            return snapshot.on_written(url)
        except BaseException as exc:  # a caller's hook (even sys.exit in it) must not stop the writer or training
            if not isinstance(exc, Exception) and threading.current_thread() is not self._thread:
                raise  # e.g. Ctrl-C while an eviction calls the hook on the training thread: the user's to handle
            self._report_error(exc, f"the on_written hook of a {snapshot.category} snapshot failed: {exc!r}")
            return None

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's pending snapshots; never write them."""
        self._queue.forget_after_fork()
        self._done = threading.Condition(threading.RLock())
        self._closed = True

    # ------------------------------------------------------------------ writer side
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._drain())
        except BaseException as exc:  # a bug or a sink raising past its contract: say so, never go quiet
            self._died = exc
            self._report_death()
        finally:
            self._loop.close()
            with self._done:
                self._done.notify_all()

    def _report_death(self, category: str | None = None) -> None:
        """The writer thread has ended early: count (a refused submit of ``category`` as
        failed) and log it once."""
        message = (f"the writer thread for {self.save_dir} died ({self._died!r}); snapshots pending "
                   "and submitted from now on are not written")
        kind = ("writer thread died",)
        first = (self._stats.record_error(kind, message) if category is None
                 else self._stats.record_failure(category, kind, message))
        if first:
            logger.error("rtsave_async: %s", message)

    async def _start(self) -> None:
        """On the writer's loop, before the thread starts: the sink, the run manifest
        (ValueError for another format's run) and this writer's manifest."""
        try:
            await self._sink.start()
            await manifest.join_run(self._sink, self.writer_id, self.format, self._started)
        except OSError as exc:
            self._report_storage_error(exc, names.RUN_MANIFEST_KEY)
        await self._refresh_writer_manifest()

    async def _drain(self) -> None:
        found_work = True  # since the last sleep
        while True:
            batch = self._queue.take_batch(self._batch_size)
            if self._segments is not None and len(self._queue):  # fallen behind: coalesce the whole backlog
                batch += self._queue.take_batch(self._queue.capacity)
            if batch:
                await self._dispatch(batch)
                found_work = True
            elif self._stopping:
                break
            else:
                await self._housekeeping()
                await self._sleep_until_woken(idle=not found_work)
                found_work = False
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))
        if self._segments is not None:
            await self._publish_segments(self._segments.publish_all)
        self._stats.thread_cpu_seconds = time.thread_time()
        await self._refresh_writer_manifest(closed=True)
        try:
            await manifest.write_total_stats(self._sink, self.writer_id, self.stats())
        except OSError as exc:
            self._report_storage_error(exc, names.STATS_KEY)
        deadline = self._stop_deadline or time.monotonic() + self.exit_timeout
        try:
            await self._sink.finish(max(0.0, deadline - time.monotonic() - _JOIN_MARGIN))
        except Exception as exc:  # a background copy's bug must not keep the sink from closing
            self._report_error(exc, f"could not finish storing to {self._sink.url('')}: {exc!r}")
        try:
            await self._sink.close()
        except OSError as exc:
            self._report_storage_error(exc, "")

    async def _housekeeping(self) -> None:
        """After each batch and while idle: publish aged segments, refresh this writer's
        manifest every ``STATS_REFRESH_SECONDS``."""
        self._stats.thread_cpu_seconds = time.thread_time()  # only this thread can read its own
        if self._segments is not None:
            await self._publish_segments(self._segments.publish_aged)
        if time.monotonic() - self._stats_written_at >= STATS_REFRESH_SECONDS:
            await self._refresh_writer_manifest()

    async def _sleep_until_woken(self, idle: bool) -> None:
        """Until a wake-up call, or at most ``drain_interval`` seconds (when it is 0: the
        manifest refresh interval, so that housekeeping still runs). ``idle`` (the last
        wake found nothing): until the next housekeeping is due, a submit arming a drain
        (:meth:`_drain_soon`) in between."""
        timeout = self._drain_interval or STATS_REFRESH_SECONDS
        if idle and self._queue.mark_idle():
            timeout = max(timeout, self._next_housekeeping_in())
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    def _next_housekeeping_in(self) -> float:
        """Seconds until the manifest refresh or an open segment's publishing is due."""
        due = STATS_REFRESH_SECONDS - (time.monotonic() - self._stats_written_at)
        publish = self._segments.next_publish_in() if self._segments is not None else None
        return min(due, publish) if publish is not None else due

    async def _dispatch(self, batch: list[Snapshot]) -> None:
        """Start every snapshot's store: files at most ``max_in_flight`` (and
        ``queue_bytes``) at a time, lines of one category as one append (categories
        concurrently). Then advance the completion mark."""
        lines: dict[str, list[tuple[Snapshot, dict[str, Any]]]] = {}
        self._unfinished.update(snapshot.sequence for snapshot in batch)
        self._taken_sequence = batch[-1].sequence
        for snapshot in batch:
            metadata = self._next_metadata(snapshot)
            if self._segments is not None and self._segments.takes(snapshot):
                lines.setdefault(snapshot.category, []).append((snapshot, metadata))
                continue
            await self._room_in_flight(snapshot.size)
            try:
                stem = await self._files.reserve_stem(snapshot)
            except OSError as exc:
                self._fail([snapshot], exc)
                self._finished([snapshot])
                continue
            task = self._loop.create_task(self._store_file(snapshot, stem, metadata))
            self._in_flight[snapshot.sequence] = task
            self._in_flight_bytes += snapshot.size
            task.add_done_callback(lambda _task, done=snapshot: self._store_done(done))
        # One append per category, all categories at once: a slow store's latency is paid once per drain.
        await asyncio.gather(*(self._append_lines(category, items) for category, items in lines.items()))
        self._finished([snapshot for items in lines.values() for snapshot, _ in items])
        await self._housekeeping()

    async def _room_in_flight(self, size: int) -> None:
        """Until fewer than ``max_in_flight`` file stores are in flight and, but for a
        lone one, a snapshot of ``size`` bytes keeps them within ``queue_bytes``: what the
        writer holds in its hands is bounded like what waits in the queue."""
        while len(self._in_flight) >= self._max_in_flight or (
                self._in_flight and self._in_flight_bytes + size > self._queue.max_bytes):
            await asyncio.wait(list(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED)

    def _next_metadata(self, snapshot: Snapshot) -> dict[str, Any]:
        count = self._snapshot_counts.get(snapshot.category, 0) + 1
        self._snapshot_counts[snapshot.category] = count
        return snapshot_metadata(self.writer_id, count, snapshot.created, snapshot.category)

    def _store_done(self, snapshot: Snapshot) -> None:
        del self._in_flight[snapshot.sequence]
        self._in_flight_bytes -= snapshot.size
        self._finished([snapshot])

    def _finished(self, snapshots: list[Snapshot]) -> None:
        """Advance the mark ``flush`` waits for over the contiguous finished snapshots."""
        self._unfinished.difference_update(snapshot.sequence for snapshot in snapshots)
        mark = min(self._unfinished) - 1 if self._unfinished else self._taken_sequence
        if mark > self._completed_sequence:
            with self._done:
                self._completed_sequence = mark
                self._done.notify_all()

    async def _store_file(self, snapshot: Snapshot, stem: str, metadata: dict[str, Any]) -> None:
        started = time.perf_counter_ns()
        try:
            key, size, encode_ns = await self._files.store(snapshot, stem, metadata)
        except BaseException as exc:  # an encoder's SystemExit too: this snapshot fails, the writer goes on
            self._fail([snapshot], exc)
            return
        self._stats.record_written(snapshot.category, size, encode_ns, time.perf_counter_ns() - started - encode_ns)
        if snapshot.on_written is not None:
            await self._written(snapshot, self._sink.url(key))

    async def _append_lines(self, category: str, items: list[tuple[Snapshot, dict[str, Any]]]) -> None:
        assert self._segments is not None
        snapshots = [snapshot for snapshot, _ in items]
        started = time.perf_counter_ns()
        try:
            key, size, encode_ns = await self._segments.append(category, items)
        except BaseException as exc:
            self._fail(snapshots, exc)
            return
        self._stats.record_written(category, size, encode_ns, time.perf_counter_ns() - started - encode_ns,
                                   count=len(snapshots))
        url = self._sink.url(key)
        for snapshot in snapshots:
            if snapshot.on_written is not None:
                await self._written(snapshot, url)

    async def _written(self, snapshot: Snapshot, url: str) -> None:
        follow_up = self._call_on_written(snapshot, url)
        if follow_up is not None:
            try:
                await follow_up
            except BaseException as exc:
                self._report_error(exc, f"the on_written hook of a {snapshot.category} snapshot failed: {exc!r}")

    def _fail(self, snapshots: list[Snapshot], exc: BaseException) -> None:
        """Count (and log once per kind) snapshots that could not be stored."""
        category = snapshots[0].category
        if isinstance(exc, OSError):
            where = exc.filename or self._sink.url(category)
            message = f"could not write {where}: {exc.strerror or exc}"
        else:  # an attachment encoder failed; never let it kill the loop
            message = f"could not encode a {category} snapshot: {exc!r}"
        for _ in snapshots:
            self._report_error(exc, message, category)
        for snapshot in snapshots:
            if snapshot.on_written is not None:
                self._call_on_written(snapshot, None)

    async def _publish_segments(self, publish: Callable[[], Awaitable[None]]) -> None:
        try:
            await publish()
        except OSError as exc:
            self._report_storage_error(exc, "")

    async def _refresh_writer_manifest(self, closed: bool = False) -> None:
        self._stats_written_at = time.monotonic()
        try:
            await manifest.write_writer_manifest(self._sink, self._info, self.stats(), closed, time.time())
        except OSError as exc:
            self._report_storage_error(exc, names.writer_manifest_key(self.writer_id))

    def _report_storage_error(self, exc: OSError, key: str) -> None:
        """A run-level file (manifest, stats, segment rename) could not be written."""
        self._report_error(exc, f"could not write {exc.filename or self._sink.url(key)}: {exc.strerror or exc}")

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
