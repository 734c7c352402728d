"""A minimal decoder of ``jsonl.zst`` segments, for tests that must not depend on the readers."""

from __future__ import annotations

import dataclasses

import zstandard


@dataclasses.dataclass
class DecodedSegment:
    """The lines of a segment's complete frames, and what followed the last one."""

    lines: list[bytes]
    torn_tail: bool  # the data ends inside a frame (a crash while appending)
    bad_frame_at: int | None  # offset of a frame that fails to decode before the end


def decode_segment(data: bytes) -> DecodedSegment:
    """Decode ``data`` frame by frame; stop at the first frame that is not whole."""
    view = memoryview(data)
    lines: list[bytes] = []
    offset = 0
    while offset < len(data):
        frame = zstandard.ZstdDecompressor().decompressobj()
        try:
            text = frame.decompress(view[offset:])
        except zstandard.ZstdError:
            return DecodedSegment(lines, False, offset)
        if not frame.eof:
            return DecodedSegment(lines, True, None)
        lines += text.splitlines()
        offset = len(data) - len(frame.unused_data)
    return DecodedSegment(lines, False, None)
