"""Writer stand-ins with :class:`~rtsave_async.writer.SnapshotWriter`'s producer-side interface."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


class RecordingWriter:
    """Writer stand-in that keeps every submitted payload in memory and never writes.

    It is the slowest possible writer: nothing is serialized until the test looks, long
    after the env kept stepping. Each payload is deep-copied at submit time for comparison.

    :param drain_interval: what the callback reads as the writer's drain interval; the
        default 0 has every save submitted at once (none held), so that a payload's copy
        is taken when it was gathered
    """

    def __init__(self, save_dir: Path, drain_interval: float = 0.0):
        self.save_dir = save_dir
        self.exit_timeout = 10.0
        self.drain_interval = drain_interval
        self.submitted: list[tuple[str, list[dict], list[dict]]] = []
        self.deadlines: list[float | None] = []
        self.flushes: list[float | None] = []

    def submit(self, category: str, records: list[dict], deadline: float | None = None) -> bool:
        self.submitted.append((category, records, copy.deepcopy(records)))
        self.deadlines.append(deadline)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes.append(timeout)
        return True

    def stats(self) -> dict[str, Any]:
        return {"written": 0, "dropped": 0, "failed": 0, "bytes_written": 0}

    def payloads(self, category: str) -> list[list[dict]]:
        return [records for submitted_category, records, _ in self.submitted if submitted_category == category]
