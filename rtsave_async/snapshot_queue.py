"""The bounded queue between the training thread and the writer thread.

Producers call :meth:`SnapshotQueue.put` (cheap: a lock and an append); the writer
drains it with :meth:`SnapshotQueue.take_batch` on its own schedule and is woken
early only when the queue fills up, so that saving does not make the two threads
trade the GIL on every snapshot. When the
queue is full the back-pressure policy decides what happens, and every snapshot
that does not make it is counted per category -- never silently lost.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


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
    on_written: Callable[[Path | None], None] | None = None
    sequence: int = 0  # enqueue order within one queue, starting at 1


class SnapshotQueue:
    """A FIFO of :class:`Snapshot` holding at most ``capacity`` items.

    ``on_ready`` is called (from the producer's thread) when the queue reaches
    ``wake_at`` items while the consumer is waiting for work; below that the consumer
    finds the items on its next scheduled drain. ``wake_at=1`` wakes it for every item.
    """

    def __init__(
        self,
        capacity: int,
        policy: BackPressure | str = BackPressure.BLOCK,
        block_timeout: float = 1.0,
        on_ready: Callable[[], None] = lambda: None,
        wake_at: int = 1,
    ) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"queue capacity must be a positive integer, got {capacity!r}")
        if block_timeout < 0:
            raise ValueError(f"block_timeout must be >= 0 seconds, got {block_timeout!r}")
        self.capacity = capacity
        self.policy = BackPressure(policy)
        self.block_timeout = block_timeout
        self._on_ready = on_ready
        self._wake_at = max(1, min(wake_at, capacity))
        self._items: deque[Snapshot] = deque()
        # Re-entrant so that a signal handler running on a producer thread can flush.
        self._lock = threading.RLock()
        self._not_full = threading.Condition(self._lock)
        self._consumer_waiting = False
        self.last_sequence = 0
        self.peak_depth = 0
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, snapshot: Snapshot) -> bool:
        """Enqueue ``snapshot``; False if it was dropped (see :class:`BackPressure`)."""
        with self._lock:
            if len(self._items) >= self.capacity and not self._make_room():
                self.dropped[snapshot.category] += 1
                return False
            self.last_sequence += 1
            snapshot.sequence = self.last_sequence
            self._items.append(snapshot)
            self.peak_depth = max(self.peak_depth, len(self._items))
            wake = self._consumer_waiting and len(self._items) >= self._wake_at
            if wake:
                self._consumer_waiting = False
        if wake:
            self._on_ready()
        return True

    def _make_room(self) -> bool:
        """Free one slot per the policy (lock held); False when the new item must go."""
        if self.policy is BackPressure.DROP_OLDEST:
            self.dropped[self._items.popleft().category] += 1
            return True
        if self.policy is BackPressure.BLOCK:
            deadline = time.monotonic() + self.block_timeout
            while len(self._items) >= self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            return True
        return False

    def take_batch(self, max_items: int) -> list[Snapshot]:
        """Remove and return up to ``max_items`` from the front.

        An empty result means the queue was empty and the consumer is now marked as
        waiting: the next :meth:`put` calls ``on_ready``.
        """
        with self._lock:
            count = min(max_items, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            if batch:
                self._not_full.notify_all()
            else:
                self._consumer_waiting = True
            return batch

    def discard_all(self) -> int:
        """Drop every pending item (used by a forked child that must not write them)."""
        with self._lock:
            count = len(self._items)
            self._items.clear()
            return count
