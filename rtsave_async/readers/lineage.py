"""A run's lineage: which records a resume from an earlier checkpoint left behind.

Every training start writes one ``hyperparameters`` record whose ``timestep`` is the
step it starts from (0, or the checkpoint's step on a resume). Resuming from a
checkpoint at step ``S`` abandons what the earlier branch recorded after ``S``: a
record is **superseded** when it was written before that start and its ``timestep``
is greater than ``S`` (the state at ``S`` itself is shared by both branches, so the
checkpoint resumed from stays). A writer that kept writing after the start is another
trainer running alongside, not an abandoned branch, and is left alone.

Records carry their write time (``_rtsave.time``); for files written before that
metadata existed the order of a category's files stands in for it: the resume shows
where the category's timestep goes back, and the start it goes back to is the
largest training start not above the new timestep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class TrainingStart(NamedTuple):
    """One ``hyperparameters`` record: where a training (re)started, when, by whom."""

    timestep: int
    time: str | None
    writer: str | None


class Entry(NamedTuple):
    """One record as lineage sees it. ``save`` numbers the saves of a category in order."""

    save: int
    time: str | None
    writer: str | None
    timestep: int | None


def superseded(entries: Sequence[Entry], starts: Sequence[TrainingStart]) -> list[bool]:
    """For each of a category's ``entries`` (in write order), whether a later training
    start abandoned it (see the module docstring)."""
    flags = [False] * len(entries)
    timed_starts = [start for start in starts if start.time is not None]
    if timed_starts:
        _mark_timed(entries, timed_starts, flags)
    if any(entry.time is None and entry.timestep is not None for entry in entries):
        _mark_untimed(entries, sorted(start.timestep for start in starts), flags)
    return flags


def _mark_timed(entries: Sequence[Entry], starts: Sequence[TrainingStart], flags: list[bool]) -> None:
    last_write: dict[str | None, str] = {}
    for entry in entries:
        if entry.time is not None and entry.time > last_write.get(entry.writer, ""):
            last_write[entry.writer] = entry.time
    for index, entry in enumerate(entries):
        if entry.time is None or entry.timestep is None:
            continue
        for start in starts:
            if (entry.time < start.time and entry.timestep > start.timestep
                    and (entry.writer == start.writer or last_write[entry.writer] < start.time)):
                flags[index] = True
                break


def _mark_untimed(entries: Sequence[Entry], start_timesteps: Sequence[int], flags: list[bool]) -> None:
    save_timesteps: dict[int, int] = {}
    for entry in entries:
        if entry.time is None and entry.timestep is not None:
            save_timesteps[entry.save] = max(entry.timestep, save_timesteps.get(entry.save, entry.timestep))
    highest = None
    for save, timestep in save_timesteps.items():  # saves in write order
        if highest is not None and timestep < highest:
            resumed_from = max((start for start in start_timesteps if start <= timestep), default=timestep - 1)
            for index, entry in enumerate(entries):
                if entry.save >= save:
                    break
                if entry.time is None and entry.timestep is not None and entry.timestep > resumed_from:
                    flags[index] = True
            highest = timestep
        else:
            highest = timestep if highest is None else max(highest, timestep)
