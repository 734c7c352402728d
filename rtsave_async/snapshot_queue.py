"""The bounded queue between the training thread and the writer thread.

Producers call :meth:`SnapshotQueue.put` (cheap: a lock and an append); the writer
drains it with :meth:`SnapshotQueue.take_batch` on its own schedule and is woken
early only when the queue fills up, so that saving does not make the two threads
trade the GIL on every snapshot. When the queue is full the back-pressure policy
decides what happens, and every snapshot that does not make it is counted per
category -- never silently lost.

The queue is bounded twice: by a count (``capacity`` snapshots) and by bytes
(``max_bytes``, measured with :func:`estimate_bytes`, a cheap estimate taken on the
training thread). It is full when either bound would be passed. A single snapshot
larger than ``max_bytes`` is still accepted once the queue is empty (alone it may pass
the byte bound), so a big save is delayed, never refused for its size alone.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rtsave_async.validation import check_number, check_positive_int

_ROOM_POLL_SECONDS = 0.01
DEFAULT_QUEUE_BYTES = 512 * 1024 * 1024
RECORD_BYTES = 64  # a record's JSON size apart from the values estimate_bytes sizes
VALUE_BYTES = 16  # a scalar or a value too deep to look at
_ESTIMATE_DEPTH = 4  # containers below this depth count as VALUE_BYTES
_ESTIMATE_SAMPLES = 2  # a longer list is sized from its first and last items
_SCALAR_TYPES = frozenset((int, float, bool, type(None)))


def estimate_bytes(value: Any, depth: int = 0) -> int:
    """A cheap estimate of ``value``'s size once stored, in bytes, for the queue's byte bound.

    Exact for what dominates big saves (numpy arrays and tensors: ``nbytes``; str and
    bytes: their length); a dict counts ``RECORD_BYTES`` plus its values, a scalar
    ``VALUE_BYTES``; a list of more than two items is sized from its first and last
    items (the records of one save are alike, one per env), so the cost does not grow
    with the list. Below four levels of nesting, a container counts ``VALUE_BYTES``.
    Never raises.
    """
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return VALUE_BYTES
    if kind is str or kind is bytes or kind is bytearray:
        return len(value)
    if kind is dict and depth < _ESTIMATE_DEPTH:  # records: the common case first
        return _dict_bytes(value, depth)
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, np.generic):
        return VALUE_BYTES
    if depth >= _ESTIMATE_DEPTH:
        return VALUE_BYTES
    if isinstance(value, dict):
        return _dict_bytes(value, depth)
    if isinstance(value, (list, tuple)):
        if len(value) > _ESTIMATE_SAMPLES:
            sampled = estimate_bytes(value[0], depth + 1) + estimate_bytes(value[-1], depth + 1)
            return VALUE_BYTES + sampled * len(value) // 2
        total = VALUE_BYTES
        for item in value:
            total += estimate_bytes(item, depth + 1)
        return total
    if isinstance(value, (str, bytes, bytearray)):  # subclasses
        return len(value)
    if kind.__module__.startswith("torch") and hasattr(value, "element_size"):
        try:
            return int(value.nelement() * value.element_size())
        except Exception:  # a tensor that cannot tell (e.g. nested): its JSON will say
            return VALUE_BYTES
    return VALUE_BYTES


def _dict_bytes(value: dict, depth: int) -> int:
    """:func:`estimate_bytes` of a dict above the depth limit; scalars and str values sized inline."""
    total = RECORD_BYTES
    for item in value.values():
        kind = type(item)
        if kind in _SCALAR_TYPES:
            total += VALUE_BYTES
        elif kind is str:
            total += len(item)
        else:
            total += estimate_bytes(item, depth + 1)
    return total


class BackPressure(str, enum.Enum):
    """What :meth:`SnapshotQueue.put` does when the queue is full.

    - ``block``: wait up to ``block_timeout`` seconds for room, then drop the new snapshot.
    - ``drop_oldest``: evict the oldest pending snapshot to make room.
    - ``drop_newest``: refuse the new snapshot.
    """

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


@dataclass(slots=True)
class Snapshot:
    """One pending file: ``payload`` goes to ``category`` under a name stamped ``created``,
    with optional attachments stored beside it."""

    category: str
    payload: Any
    created: float  # seconds since the epoch, taken at submit time
    attachments: dict[str, Callable[[], bytes]] = field(default_factory=dict)  # suffix -> encoder
    on_written: Callable[[str | None], Any] | None = None  # hears the stored url, or None
    sequence: int = 0  # enqueue order within one queue, starting at 1
    size: int = 0  # estimate_bytes of the payload, set by the queue unless the submitter set it
    encoded: bytes | None = None  # the payload's JSON if the submitter encoded it (payload then None)


class SnapshotQueue:
    """A FIFO of :class:`Snapshot` holding at most ``capacity`` items and, but for a
    single oversized one, at most ``max_bytes`` estimated bytes.

    ``on_ready`` is called (from the producer's thread) when the queue reaches
    ``wake_at`` items while the consumer is waiting for work; below that the consumer
    finds the items on its next scheduled drain. ``wake_at=1`` wakes it for every item.
    ``on_first`` is called (from the producer's thread) by the first put after the
    consumer marked itself idle (:meth:`mark_idle`), unless that put calls ``on_ready``:
    a consumer with nothing to do need not wake on a timer to look.
    ``on_evict`` is called (from the producer's thread) with each accepted snapshot that
    ``drop_oldest`` evicts before it was taken.

    The consumer never waits for a lock a producer may hold: a signal handler that
    interrupts a producer inside :meth:`put` and flushes cannot deadlock the writer.
    """

    def __init__(
        self,
        capacity: int,
        policy: BackPressure | str = BackPressure.BLOCK,
        block_timeout: float = 1.0,
        on_ready: Callable[[], None] = lambda: None,
        wake_at: int = 1,
        on_evict: Callable[[Snapshot], None] = lambda snapshot: None,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
        on_first: Callable[[], None] = lambda: None,
    ) -> None:
        self.capacity = check_positive_int("queue_size", capacity)
        self.max_bytes = check_positive_int("queue_bytes", max_bytes)
        self.block_timeout = check_number("block_timeout", block_timeout, 0, "seconds")
        try:
            self.policy = BackPressure(policy)
        except ValueError:
            choices = ", ".join(repr(choice.value) for choice in BackPressure)
            raise ValueError(f"policy must be one of {choices}, got {policy!r}") from None
        self._on_ready = on_ready
        self._on_first = on_first
        self._on_evict = on_evict
        self._wake_at = max(1, min(wake_at, capacity))
        self._items: deque[Snapshot] = deque()  # append/popleft are atomic: the consumer takes no lock
        self._producers = threading.RLock()  # orders producers; re-entrant for a signal handler that submits
        self._room = threading.Condition(threading.Lock())  # producers waiting under "block"
        self._consumer_waiting = False
        self._consumer_idle = False  # set by the consumer (mark_idle), cleared by the next put
        self.last_sequence = 0
        self.peak_depth = 0
        self.peak_bytes = 0
        # Queued bytes = added - taken - evicted; each counter has one writing thread, so
        # the consumer needs no lock (an int's += is not atomic across threads).
        self._bytes_added = 0  # producers, under _producers
        self._bytes_evicted = 0  # producers, under _producers
        self._bytes_taken = 0  # the consumer
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        """The estimated bytes of the snapshots waiting now."""
        return self._bytes_added - self._bytes_evicted - self._bytes_taken

    def put(self, snapshot: Snapshot, deadline: float | None = None) -> bool:
        """Enqueue ``snapshot``; False if it was dropped (see :class:`BackPressure`).

        :param deadline: under ``block``, the ``time.monotonic()`` at which to stop waiting
            for room, instead of ``block_timeout`` from now; default None
        """
        if not snapshot.size:
            snapshot.size = estimate_bytes(snapshot.payload)
        evicted: list[Snapshot] = []
        refused = wake = first = False
        with self._producers:
            if self._full(snapshot.size):
                if self.policy is BackPressure.DROP_OLDEST:
                    evicted = self._evict_for(snapshot.size)
                elif self.policy is BackPressure.DROP_NEWEST or not self._wait_for_room(snapshot.size, deadline):
                    self.dropped[snapshot.category] += 1
                    refused = True
            if not refused:
                snapshot.sequence = self.last_sequence + 1
                self._bytes_added += snapshot.size
                items = self._items
                items.append(snapshot)
                self.last_sequence = snapshot.sequence  # after the append: a flush never waits for a missing item
                depth, queued = len(items), self.queued_bytes
                if depth > self.peak_depth:
                    self.peak_depth = depth
                if queued > self.peak_bytes:
                    self.peak_bytes = queued
                wake = self._consumer_waiting and (depth >= self._wake_at or queued >= self.max_bytes // 4)
                if wake:
                    self._consumer_waiting = False
                if self._consumer_idle:
                    self._consumer_idle, first = False, not wake
        if evicted or refused:
            # The queue is full: hand the GIL over, or producers that keep submitting
            # starve the writer thread, which needs it back after every system call.
            time.sleep(0)
        for snapshot_evicted in evicted:
            self._on_evict(snapshot_evicted)
        if wake:
            self._on_ready()
        elif first:
            self._on_first()
        return not refused

    def _full(self, size: int) -> bool:
        """Whether a snapshot of ``size`` bytes has no room: the count is reached, or its
        bytes would pass ``max_bytes`` (an empty queue always has room)."""
        depth = len(self._items)
        return depth >= self.capacity or depth > 0 and self.queued_bytes + size > self.max_bytes

    def _evict_for(self, size: int) -> list[Snapshot]:
        """Under ``drop_oldest``: evict from the front until a snapshot of ``size`` fits."""
        evicted = []
        while self._full(size):
            try:
                oldest = self._items.popleft()
            except IndexError:  # the consumer emptied the queue meanwhile
                break
            self._bytes_evicted += oldest.size
            self.dropped[oldest.category] += 1
            evicted.append(oldest)
        return evicted

    def _wait_for_room(self, size: int, deadline: float | None = None) -> bool:
        """Under ``block``: wait up to ``deadline`` (default ``block_timeout`` from now) for room for ``size`` bytes."""
        if deadline is None:
            deadline = time.monotonic() + self.block_timeout
        while self._full(size):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._room:
                if self._full(size):
                    # Short slices: the consumer only notifies when it gets the lock without waiting.
                    self._room.wait(min(remaining, _ROOM_POLL_SECONDS))
        return True

    def take_batch(self, max_items: int) -> list[Snapshot]:
        """Remove and return up to ``max_items`` from the front (consumer only).

        An empty result means the queue was empty and the consumer is now marked as
        waiting: the next :meth:`put` reaching ``wake_at`` items calls ``on_ready``.
        """
        batch = self._pop(max_items)
        if not batch:
            self._consumer_waiting = True
            batch = self._pop(max_items)  # a put that came before the mark did not wake us
        if batch and self._room.acquire(blocking=False):
            try:
                self._room.notify_all()
            finally:
                self._room.release()
        return batch

    def mark_idle(self) -> bool:
        """Mark the consumer idle (consumer only): the next :meth:`put` calls ``on_first``.
        False, and not marked, if items are waiting (none is lost between the consumer's
        last look and the mark: a put appends before it reads the mark)."""
        self._consumer_idle = True
        if self._items:
            self._consumer_idle = False
            return False
        return True

    def _pop(self, max_items: int) -> list[Snapshot]:
        batch: list[Snapshot] = []
        while len(batch) < max_items:
            try:
                snapshot = self._items.popleft()
            except IndexError:
                break
            self._bytes_taken += snapshot.size
            batch.append(snapshot)
        return batch

    def forget_after_fork(self) -> int:
        """In a forked child: drop every pending item and renew the locks, which a
        thread of the parent may have held at the fork. Returns how many were pending."""
        pending = len(self._items)
        self._items = deque()
        self._bytes_added = self._bytes_evicted = self._bytes_taken = 0
        self._producers = threading.RLock()
        self._room = threading.Condition(threading.Lock())
        return pending
