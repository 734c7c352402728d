"""How snapshots become stored objects: one JSON file per save, or append-only segments.

- ``"json"`` (default): :class:`~rtsave_async.formats.files.FileStore`, one file per
  save per category, the shape our users read (a JSON array of records).
- ``"jsonl.zst"``: :class:`~rtsave_async.formats.segments.SegmentStore`, per category
  append-only segments of JSON lines in zstd frames. Checkpoints stay files.
"""

from __future__ import annotations

JSON = "json"
JSONL_ZST = "jsonl.zst"
FORMATS: tuple[str, ...] = (JSON, JSONL_ZST)


def validate_format(name: object) -> str:
    """``name`` if it is a known format, else ``ValueError`` naming ``format``."""
    if name not in FORMATS:
        choices = ", ".join(repr(choice) for choice in FORMATS)
        raise ValueError(f"format must be one of {choices}, got {name!r}")
    return name  # type: ignore[return-value]
