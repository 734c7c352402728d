"""An open segment in object storage: immutable parts that together are a prefix of it.

Object storage cannot append, so the uploader stores each new stretch of an open
segment as one more create-only object, named by the byte offset it starts at (see
:func:`rtsave_async.names.part_key`). Every part is a slice of the same growing local
file, so parts never disagree where they overlap (two uploaders racing may store
overlapping slices); the segment as uploaded so far is the stretch from byte 0 that
the parts cover without a gap.
"""

from __future__ import annotations

from typing import NamedTuple


class Part(NamedTuple):
    offset: int
    size: int
    path: str  # the fsspec path of the part object


class Piece(NamedTuple):
    """Bytes ``[skip, skip + size)`` of ``part`` are bytes ``[start, start + size)`` of the segment."""

    part: Part
    start: int
    skip: int
    size: int


def contiguous(parts: list[Part]) -> tuple[list[Piece], int]:
    """The pieces covering the segment from byte 0 without a gap, and where they end."""
    pieces: list[Piece] = []
    covered = 0
    for part in sorted(parts):
        if part.offset > covered:
            break
        end = part.offset + part.size
        if end > covered:
            pieces.append(Piece(part, covered, covered - part.offset, end - covered))
            covered = end
    return pieces, covered


def pieces_between(pieces: list[Piece], start: int, end: int) -> list[tuple[Part, int, int]]:
    """``(part, first byte, last byte + 1)`` within each part for segment bytes ``[start, end)``."""
    wanted = []
    for piece in pieces:
        low, high = max(start, piece.start), min(end, piece.start + piece.size)
        if low < high:
            first = piece.skip + low - piece.start
            wanted.append((piece.part, first, first + high - low))
    return wanted
