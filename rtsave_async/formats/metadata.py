"""The ``_rtsave`` metadata every stored snapshot carries, and where it goes."""

from __future__ import annotations

from typing import Any

import orjson

from rtsave_async.names import utc_iso

METADATA_KEY = "_rtsave"


def snapshot_metadata(writer_id: str, sequence: int, created: float, category: str) -> dict[str, Any]:
    """``{"writer", "seq", "time", "category"}``: ``seq`` counts this writer's snapshots of
    ``category`` from 1; ``time`` is the submit time (UTC ISO 8601, microseconds, ``Z``)."""
    return {"writer": writer_id, "seq": sequence, "time": utc_iso(created), "category": category}


def with_metadata(payload: Any, metadata: dict[str, Any]) -> Any:
    """``payload`` as the json format stores it: each record dict of an array, or the one
    object, gains the ``_rtsave`` key (copies; the caller's dicts stay as they are)."""
    if isinstance(payload, dict):
        return {**payload, METADATA_KEY: metadata}
    if isinstance(payload, list):
        return [{**record, METADATA_KEY: metadata} if isinstance(record, dict) else record for record in payload]
    return payload


def segment_line(payload: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """One line of a segment: ``{"_rtsave": metadata, "data": payload}``."""
    return {METADATA_KEY: metadata, "data": payload}


def segment_line_bytes(metadata: dict[str, Any], data: bytes) -> bytes:
    """:func:`segment_line` as JSON around a payload already encoded (``data``): the same
    bytes as orjson's encoding of the whole line."""
    return b'{"' + METADATA_KEY.encode() + b'":' + orjson.dumps(metadata) + b',"data":' + data + b"}"
