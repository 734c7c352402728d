"""Counters and latency windows kept by the writer thread."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

_LATENCY_WINDOW = 4096  # most recent samples kept per latency
_ERRORS_KEPT = 20


class LatencyWindow:
    """The most recent durations in nanoseconds; percentiles in microseconds."""

    def __init__(self) -> None:
        self._samples: deque[int] = deque(maxlen=_LATENCY_WINDOW)

    def add(self, nanoseconds: int) -> None:
        """Keep one duration (nanoseconds); the oldest beyond the window is forgotten."""
        self._samples.append(nanoseconds)

    def percentiles_us(self) -> dict[str, float | None]:
        """p50 and p99 of the window in microseconds (None when empty)."""
        if not self._samples:
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(np.fromiter(self._samples, dtype=np.int64), [50, 99]) / 1000.0
        return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}


class WriterStats:
    """What the writer thread did: files written, bytes, failures and their messages."""

    def __init__(self) -> None:
        self.written: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.bytes_written = 0
        self.stores = 0  # data stores made: a segment append holding many saves counts once
        self.errors: list[str] = []  # the first distinct messages, at most _ERRORS_KEPT
        self._error_kinds: set[tuple[object, ...]] = set()
        self.serialize_latency = LatencyWindow()
        self.write_latency = LatencyWindow()
        #: CPU seconds the writer thread has used, as it last read them (``time.thread_time``).
        self.thread_cpu_seconds = 0.0

    def record_written(self, category: str, size: int, serialize_ns: int, write_ns: int, count: int = 1) -> None:
        """``count`` snapshots stored together (one segment frame: one latency sample each)."""
        self.written[category] += count
        self.stores += 1
        self.bytes_written += size
        self.serialize_latency.add(serialize_ns)
        self.write_latency.add(write_ns)

    def record_failure(self, category: str, kind: tuple[object, ...], message: str) -> bool:
        """Count a snapshot that was not written; True the first time this ``kind`` is seen."""
        self.failed[category] += 1
        return self.record_error(kind, message)

    def record_error(self, kind: tuple[object, ...], message: str) -> bool:
        """Keep ``message`` if this ``kind`` of error is new; True when it is."""
        if kind in self._error_kinds:
            return False
        self._error_kinds.add(kind)
        if len(self.errors) < _ERRORS_KEPT:
            self.errors.append(message)
        return True
