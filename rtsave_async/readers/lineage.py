"""A run's lineage: which records a resume from an earlier checkpoint left behind.

Every training start writes one ``hyperparameters`` record whose ``timestep`` is the
step it starts from (0, or the checkpoint's step on a resume). Resuming from a
checkpoint at step ``S > 0`` abandons what the earlier branch recorded after ``S``: a
record is **superseded** when it was written before that start and its ``timestep``
is greater than ``S`` (the state at ``S`` itself is shared by both branches, so the
checkpoint resumed from stays). A new training from step 0 in the same folder is not a
resume and hides nothing. A writer that kept writing after the start is another
trainer running alongside, not an abandoned branch, and is left alone.

Records carry their write time (``_rtsave.time``); for files written before that
metadata existed the order of a category's files stands in for it: the resume shows
where the category's timestep goes back, and the resume it goes back to is the
one with the largest start not above the new timestep (none: nothing is hidden).
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


def superseded(entries: Sequence[Entry], resumes: Sequence[TrainingStart]) -> list[bool]:
    """For each of a category's ``entries`` (in write order), whether one of the
    ``resumes`` (training starts at a step > 0) abandoned it (see the module docstring)."""
    flags = [False] * len(entries)
    timed = [resume for resume in resumes if resume.time is not None]
    if timed:
        _mark_timed(entries, timed, flags)
    untimed = [resume.timestep for resume in resumes if resume.time is None]
    if untimed and any(entry.time is None for entry in entries):
        _mark_untimed(entries, untimed, flags)
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


def _mark_untimed(entries: Sequence[Entry], resume_timesteps: Sequence[int], flags: list[bool]) -> None:
    save_timesteps: dict[int, int] = {}
    for entry in entries:
        if entry.time is None and entry.timestep is not None:
            save_timesteps[entry.save] = max(entry.timestep, save_timesteps.get(entry.save, entry.timestep))
    highest = None
    for save, timestep in save_timesteps.items():  # saves in write order
        if highest is None or timestep >= highest:
            highest = timestep
            continue
        highest = timestep  # a new branch starts at this save
        resumed_from = max((start for start in resume_timesteps if start <= timestep), default=None)
        if resumed_from is None:
            continue
        for index, entry in enumerate(entries):
            if entry.save >= save:
                break
            if entry.time is None and entry.timestep is not None and entry.timestep > resumed_from:
                flags[index] = True
