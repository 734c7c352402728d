"""Whether a run is still being written, finished cleanly, or crashed.

A writer refreshes its ``writers/<id>.json`` every couple of seconds while it runs
(idle or not) and marks it ``closed`` when it closes. So a writer whose manifest is
not closed is *running* while the manifest is fresh (and, on this host, its process
lives), and *crashed* once it goes stale or its process is gone. A run is running if
any writer runs, finished if every writer closed, crashed otherwise. Runs written
before per-writer manifests are finished when their ``writer_stats.json`` exists.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rtsave_async.names import parse_utc_iso
from rtsave_async.sinks.local import process_alive

if TYPE_CHECKING:
    from rtsave_async.readers.run import Run

RunState = Literal["running", "finished", "crashed"]

#: A manifest not refreshed for this long (seconds) belongs to a writer that stopped:
#: writers refresh theirs every ``STATS_REFRESH_SECONDS`` (2 s), so this leaves room
#: for a slow store and for clock differences between hosts.
STALE_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class RunStatus:
    """A run's state and its writers' states (writer id -> state)."""

    state: RunState
    writers: dict[str, RunState]
    #: The newest ``updated`` time of the writers' manifests (epoch seconds), or None.
    last_update: float | None


def run_status(run: Run, now: float | None = None, stale_after: float = STALE_AFTER_SECONDS) -> RunStatus:
    """The state of ``run`` at ``now`` (epoch seconds; default the current time)."""
    now = time.time() if now is None else now
    manifests = run.writer_stats()
    writers = {writer: writer_state(manifest, now, stale_after) for writer, manifest in manifests["writers"].items()}
    updates = [parsed for manifest in manifests["writers"].values()
               if (parsed := parse_utc_iso(manifest.get("updated"))) is not None]
    if not writers:
        state: RunState = "finished" if manifests["total"] is not None else "crashed"
    elif "running" in writers.values():
        state = "running"
    elif all(writer == "finished" for writer in writers.values()):
        state = "finished"
    else:
        state = "crashed"
    return RunStatus(state, writers, max(updates) if updates else None)


def writer_state(manifest: dict[str, Any], now: float, stale_after: float = STALE_AFTER_SECONDS) -> RunState:
    """The state of one writer from its ``writers/<id>.json`` manifest."""
    if manifest.get("closed") is True:
        return "finished"
    pid = manifest.get("pid")
    if manifest.get("host") == socket.gethostname() and isinstance(pid, int) and not process_alive(pid):
        return "crashed"
    updated = parse_utc_iso(manifest.get("updated"))
    return "running" if updated is not None and now - updated <= stale_after else "crashed"

