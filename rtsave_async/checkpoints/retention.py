"""Retention of checkpoints on disk: keep the newest N, optionally every K-th.

Runs on the writer thread right after a checkpoint's JSON is written, so the
checkpoint in flight is never one it looks at and the newest complete one is always
kept. A checkpoint is removed JSON first (it stops being listed as resumable), then
its attachments. Attachments without a JSON that are older than the newest complete
checkpoint are leftovers of an interrupted write and are removed too.
"""

from __future__ import annotations

import os
from pathlib import Path

from rtsave_async.names import CHECKPOINTS, JSON_SUFFIX, file_prefix, is_temp_name, parse_sequence


def prune_checkpoints(folder: str | os.PathLike[str], keep_last: int | None, keep_every: int | None = None) -> list[str]:
    """Delete old checkpoints in ``folder``; returns the names removed.

    :param keep_last: how many of the newest complete checkpoints to keep (>= 1);
        None keeps all complete ones (orphaned attachments are still removed)
    :param keep_every: also keep forever every checkpoint whose sequence number is a
        multiple of this; None keeps no extra ones
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last!r}")
    folder = Path(folder)
    prefix = file_prefix(CHECKPOINTS)
    by_sequence: dict[int, list[str]] = {}
    complete: set[int] = set()
    for name in os.listdir(folder):
        sequence = parse_sequence(name, prefix)
        if sequence is None or is_temp_name(name):
            continue
        by_sequence.setdefault(sequence, []).append(name)
        if name.endswith(JSON_SUFFIX):
            complete.add(sequence)
    if not complete:
        return []
    kept = set(sorted(complete)[-keep_last:]) if keep_last is not None else set(complete)
    if keep_every:
        kept.update(sequence for sequence in complete if sequence % keep_every == 0)
    newest = max(complete)
    removed: list[str] = []
    for sequence, names in sorted(by_sequence.items()):
        if sequence in kept or sequence > newest:
            continue
        # The JSON goes first: from then on the checkpoint is no longer resumable.
        for name in sorted(names, key=lambda name: not name.endswith(JSON_SUFFIX)):
            try:
                os.unlink(folder / name)
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed
