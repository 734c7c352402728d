"""Flush-on-exit: every live writer is drained at normal exit, SIGTERM, SIGHUP and SIGINT.

- ``atexit`` closes every writer (normal return, ``sys.exit``, uncaught exception).
- SIGTERM, SIGHUP (the terminal or ssh session closed) and SIGINT handlers flush every
  writer, then hand the signal to whatever handler was installed before: Python's
  default SIGINT handler raises ``KeyboardInterrupt`` as usual; a default SIGTERM or
  SIGHUP closes the writers and then terminates the process by the same signal, so its
  exit status is unchanged.
- The waits end within the longest ``exit_timeout`` of the writers, all together.
- A signal that arrives while the writers are being closed (inside ``close()``, a second
  SIGTERM, Ctrl-C during the exit drain) does not cut the close short: the writers are
  closed promptly (their stats written) and then the signal takes its course; one that
  arrives during the exit drain ends nothing more (the process is exiting already).
- A child created by ``fork`` (e.g. ``SubprocVecEnv`` workers) disowns the parent's
  writers: it neither writes nor flushes their snapshots.
- Producers that hold saves back to submit them in batches (:class:`Holder`, e.g.
  :class:`~rtsave_async.writer.held_saves.HeldSaves`) are held by the hooks while they
  hold anything, and release it to their writers before any writer is flushed or closed.

Signal handlers can only be installed from the main thread; a writer created on
another thread still gets the ``atexit`` and fork protection.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol


class Drainable(Protocol):
    """What the exit hooks need of a writer."""

    exit_timeout: float

    def flush(self, timeout: float | None = None) -> bool: ...

    def close(self, timeout: float | None = None) -> Any: ...

    def after_fork_in_child(self) -> None:
        """In a child created by fork: never write or flush the parent's snapshots."""


class Holder(Protocol):
    """A producer holding saves not yet submitted to its writer."""

    def release(self, deadline: float | None = None) -> None:
        """Submit every held save to the writer, waiting for room in its queue until
        ``deadline`` (``time.monotonic()``) at most."""


HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

logger = logging.getLogger("rtsave_async")
_writers: weakref.WeakSet[Drainable] = weakref.WeakSet()
_holders: set[Holder] = set()  # strong references: held saves outlive a producer that is dropped
_previous_handlers: dict[int, Any] = {}
_exiting = False  # the atexit drain is under way


def register(writer: Drainable) -> None:
    """Cover ``writer`` by the exit hooks (installing the signal handlers once)."""
    _writers.add(writer)
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED_SIGNALS:
            current = signal.getsignal(signum)
            if current is not _on_signal:
                _previous_handlers[signum] = current
                signal.signal(signum, _on_signal)


def unregister(writer: Drainable) -> None:
    """Stop covering ``writer`` (its thread has ended)."""
    _writers.discard(writer)


def hold(holder: Holder) -> None:
    """Release ``holder`` before the writers are drained, until :func:`let_go`."""
    _holders.add(holder)


def let_go(holder: Holder) -> None:
    """``holder`` holds nothing any more."""
    _holders.discard(holder)


def covers(writer: Drainable) -> bool:
    """Whether the exit hooks still cover ``writer``."""
    return writer in _writers


def _for_all_writers(wait: Callable[[Drainable, float], Any]) -> None:
    """``wait(writer, seconds)`` for every writer, all within one shared deadline: the
    longest ``exit_timeout`` (the writers' threads drain at the same time); every
    holder released first."""
    writers = list(_writers)
    deadline = time.monotonic() + max((writer.exit_timeout for writer in writers), default=0.0)
    for holder in list(_holders):
        try:
            holder.release(deadline)
        except Exception:  # e.g. its writer closed already: the other writers are still drained
            logger.exception("rtsave_async: held saves could not be submitted at exit")
        let_go(holder)
    for writer in writers:
        wait(writer, max(0.0, min(writer.exit_timeout, deadline - time.monotonic())))


def _close_all() -> None:
    _for_all_writers(lambda writer, seconds: writer.close(seconds))


def _exit_drain() -> None:
    global _exiting
    _exiting = True
    _close_all()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if _exiting:  # e.g. Ctrl-C during the exit drain: raising here would only skip the rest of it
        _close_all()
    elif callable(previous) or previous == signal.SIG_IGN:
        _for_all_writers(lambda writer, seconds: writer.flush(seconds))
        if callable(previous):
            previous(signum, frame)
    else:  # the default action: close the writers, then end the process by this signal
        _close_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        writer.after_fork_in_child()
    _writers.clear()
    _holders.clear()


atexit.register(_exit_drain)
os.register_at_fork(after_in_child=_after_fork_in_child)
