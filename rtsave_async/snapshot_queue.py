"""The bounded queue between the training thread and the writer thread.

Producers call :meth:`SnapshotQueue.put` (cheap: a lock and an append); the writer
drains it with :meth:`SnapshotQueue.take_batch` on its own schedule and is woken
early only when the queue fills up, so that saving does not make the two threads
trade the GIL on every snapshot. When the queue is full the back-pressure policy
decides what happens, and every snapshot that does not make it is counted per
category -- never silently lost.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from rtsave_async.validation import check_number, check_positive_int

_ROOM_POLL_SECONDS = 0.01


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


class SnapshotQueue:
    """A FIFO of :class:`Snapshot` holding at most ``capacity`` items.

    ``on_ready`` is called (from the producer's thread) when the queue reaches
    ``wake_at`` items while the consumer is waiting for work; below that the consumer
    finds the items on its next scheduled drain. ``wake_at=1`` wakes it for every item.
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
    ) -> None:
        self.capacity = check_positive_int("queue_size", capacity)
        self.block_timeout = check_number("block_timeout", block_timeout, 0, "seconds")
        try:
            self.policy = BackPressure(policy)
        except ValueError:
            choices = ", ".join(repr(choice.value) for choice in BackPressure)
            raise ValueError(f"policy must be one of {choices}, got {policy!r}") from None
        self._on_ready = on_ready
        self._on_evict = on_evict
        self._wake_at = max(1, min(wake_at, capacity))
        self._items: deque[Snapshot] = deque()  # append/popleft are atomic: the consumer takes no lock
        self._producers = threading.RLock()  # orders producers; re-entrant for a signal handler that submits
        self._room = threading.Condition(threading.Lock())  # producers waiting under "block"
        self._consumer_waiting = False
        self.last_sequence = 0
        self.peak_depth = 0
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, snapshot: Snapshot) -> bool:
        """Enqueue ``snapshot``; False if it was dropped (see :class:`BackPressure`)."""
        evicted, refused, wake = None, False, False
        with self._producers:
            if len(self._items) >= self.capacity:
                if self.policy is BackPressure.DROP_OLDEST:
                    evicted = self._evict_oldest()
                elif self.policy is BackPressure.DROP_NEWEST or not self._wait_for_room():
                    self.dropped[snapshot.category] += 1
                    refused = True
            if not refused:
                snapshot.sequence = self.last_sequence + 1
                self._items.append(snapshot)
                self.last_sequence = snapshot.sequence  # after the append: a flush never waits for a missing item
                self.peak_depth = max(self.peak_depth, len(self._items))
                wake = self._consumer_waiting and len(self._items) >= self._wake_at
                if wake:
                    self._consumer_waiting = False
        if evicted is not None or refused:
            # The queue is full: hand the GIL over, or producers that keep submitting
            # starve the writer thread, which needs it back after every system call.
            time.sleep(0)
        if evicted is not None:
            self._on_evict(evicted)
        if wake:
            self._on_ready()
        return not refused

    def _evict_oldest(self) -> Snapshot | None:
        try:
            evicted = self._items.popleft()
        except IndexError:  # the consumer emptied the queue meanwhile
            return None
        self.dropped[evicted.category] += 1
        return evicted

    def _wait_for_room(self) -> bool:
        """Under ``block``: wait up to ``block_timeout`` for a free slot."""
        deadline = time.monotonic() + self.block_timeout
        while len(self._items) >= self.capacity:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._room:
                if len(self._items) >= self.capacity:
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

    def _pop(self, max_items: int) -> list[Snapshot]:
        batch: list[Snapshot] = []
        while len(batch) < max_items:
            try:
                batch.append(self._items.popleft())
            except IndexError:
                break
        return batch

    def forget_after_fork(self) -> int:
        """In a forked child: drop every pending item and renew the locks, which a
        thread of the parent may have held at the fork. Returns how many were pending."""
        pending = len(self._items)
        self._items = deque()
        self._producers = threading.RLock()
        self._room = threading.Condition(threading.Lock())
        return pending
