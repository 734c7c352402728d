"""HeldSaves: saves made in quick succession, handed to the writer a batch at a time.

Saving every step, the training thread submits a few saves per millisecond, each
between two stretches of simulation and network code that push the submit path
(orjson included) out of the CPU caches. Submitted back to back instead, all but the
first of a batch run warm: saving every Go1 step, the callback's hooks took 4.9 %
of the training time instead of 5.2 % (benchmarks/RESULTS.md, session 13).

A save is held only when it follows the previous one within ``window`` seconds (the
writer's ``drain_interval`` by default: the writer would not have stored it sooner
than that anyway); a save after a pause goes to the writer at once. While it holds
anything, the exit hooks hold it, so a signal or the interpreter's exit submits the
held saves before the writers are drained.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rtsave_async.validation import check_number, check_positive_int
from rtsave_async.writer import exit_hook
from rtsave_async.writer.snapshot_writer import SnapshotWriter

#: Most saves held before they are submitted.
DEFAULT_MAX_SAVES = 16

#: One save: ``(category, records)`` for each category it writes.
Save = Sequence[tuple[str, Any]]


class HeldSaves:
    """Holds saves that come in quick succession and submits them to ``writer`` together, in order.

    Held saves are submitted once ``max_saves`` are held, at the first save ``window``
    seconds or more after the oldest one, and at :meth:`release` (call it before a
    pause in saving, e.g. when a rollout ends, and before flushing or closing the
    writer: :meth:`SnapshotWriter.flush` only covers what was submitted).

    :param writer: where the saves go
    :param window: seconds; a save this soon after the previous one is held; default
        the writer's ``drain_interval`` (0: nothing is held)
    :param max_saves: most saves held; default 16
    :param clock: monotonic seconds; default ``time.monotonic``
    """

    def __init__(self, writer: SnapshotWriter, window: float | None = None, max_saves: int = DEFAULT_MAX_SAVES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = writer
        self.window = writer.drain_interval if window is None else check_number("window", window, 0, "seconds")
        self.max_saves = check_positive_int("max_saves", max_saves)
        self._clock = clock
        self._submits: deque[tuple[str, Any]] = deque()
        self._saves = 0
        self._oldest = 0.0
        self._last_save = float("-inf")

    def __len__(self) -> int:
        """How many saves are held."""
        return self._saves

    def add(self, save: Save) -> None:
        """Submit ``save`` (each category's records), now or with the next batch."""
        now = self._clock()
        follows_closely = now - self._last_save < self.window
        self._last_save = now
        if not follows_closely:
            self.release()
            for category, records in save:
                self.writer.submit(category, records)
            return
        if not self._saves:
            self._oldest = now
            exit_hook.hold(self)
        self._submits.extend(save)
        self._saves += 1
        if self._saves >= self.max_saves or now - self._oldest >= self.window:
            self.release()

    def release(self, deadline: float | None = None) -> None:
        """Submit every held save, oldest first.

        :param deadline: ``time.monotonic()`` until which a submit may wait for room
            in the writer's queue; default None: the writer's ``block_timeout`` each
        """
        submits = self._submits
        while submits:  # popped one at a time: a signal handler releasing meanwhile submits the rest once
            category, records = submits.popleft()
            self.writer.submit(category, records, deadline=deadline)
        self._saves = 0
        exit_hook.let_go(self)
