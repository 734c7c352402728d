"""Retention of stored checkpoints: keep the newest N, optionally every K-th.

Runs on the writer's loop, through its sink, right after a checkpoint's JSON is
stored, so the checkpoint in flight is never one it looks at and the newest complete
one is always kept. A checkpoint is removed JSON first (it stops being listed as
resumable), then its attachments. Attachments without a JSON that are older than the
newest complete checkpoint are leftovers of an interrupted write and are removed too.
Checkpoints are ordered by sequence number (then stamp and writer tag).

Given the writer's id, retention looks only at what that writer owns (its tag in the
file names) and at what writers that provably write no more left (see
:func:`~rtsave_async.writer.manifest.dead_writer_tags`; names without a tag predate
writer tags and count as a finished writer's): another live writer in the same
folder may have just stored attachments whose JSON is on its way.
"""

from __future__ import annotations

from rtsave_async import names
from rtsave_async.sinks.base import Sink
from rtsave_async.writer.manifest import dead_writer_tags


async def prune_checkpoints(sink: Sink, keep_last: int | None, keep_every: int | None = None,
                            writer_id: str | None = None) -> list[str]:
    """Delete old checkpoints in ``sink``'s checkpoints folder; returns the keys removed.

    :param keep_last: how many of the newest complete checkpoints to keep (>= 1);
        None keeps all complete ones (orphaned attachments are still removed)
    :param keep_every: also keep forever every checkpoint whose sequence number is a
        multiple of this; None keeps no extra ones
    :param writer_id: the writer pruning; only its own checkpoints and those of dead
        writers are considered. None considers every checkpoint (no writer is running).
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last!r}")
    prefix = names.file_prefix(names.CHECKPOINTS)
    by_checkpoint: dict[tuple[int, str, str], list[str]] = {}  # (seq, stamp, tag) -> keys
    complete: set[tuple[int, str, str]] = set()
    owned = (None if writer_id is None
             else {names.writer_tag(writer_id), None, *await dead_writer_tags(sink, writer_id)})
    for key in await sink.list(names.CHECKPOINTS):
        parsed = names.parse_name(names.split_key(key)[1])
        if parsed is None or parsed.prefix != prefix or owned is not None and parsed.tag not in owned:
            continue
        checkpoint = (parsed.seq, parsed.stamp, parsed.tag or "")
        by_checkpoint.setdefault(checkpoint, []).append(key)
        if parsed.kind == "json":
            complete.add(checkpoint)
    if not complete:
        return []
    kept = set(sorted(complete)[-keep_last:]) if keep_last is not None else set(complete)
    if keep_every:
        kept.update(checkpoint for checkpoint in complete if checkpoint[0] % keep_every == 0)
    newest = max(complete)
    removed: list[str] = []
    for checkpoint, keys in sorted(by_checkpoint.items()):
        if checkpoint in kept or checkpoint > newest:
            continue
        # The JSON goes first: from then on the checkpoint is no longer resumable.
        for key in sorted(keys, key=lambda key: not key.endswith(names.JSON_SUFFIX)):
            await sink.delete(key)
            removed.append(key)
    return removed
