"""Decode a ``.jsonl.zst`` segment: a sequence of independent zstd frames of JSON lines.

Each writer flush appends one frame, so a crash tears at most the last one. Decoding
goes frame by frame: a frame cut short by the end of the data is a torn tail (the
caller decides whether that is news: not for an ``.open`` segment still being
appended); a frame that fails to decode is damage, reported with its byte offset, and
decoding resumes at the next frame that decodes (found by its magic number).
"""

from __future__ import annotations

from typing import NamedTuple

import zstandard

#: The 4 bytes every zstd frame starts with (0xFD2FB528, little-endian).
FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
_FEED_BYTES = 1 << 17  # fed to the decoder at a time, so finding a frame's end copies little
_DECOMPRESSOR = zstandard.ZstdDecompressor()


class FrameScan(NamedTuple):
    """What :func:`scan_frames` found in ``data``.

    ``frames``: ``(absolute offset, decompressed bytes)`` of each complete frame;
    ``end``: absolute offset up to which the data was consumed (complete frames and
    skipped damage); ``torn``: the bytes from ``end`` on are an unfinished frame;
    ``damage``: ``(absolute offset, message)`` for each stretch that was skipped;
    ``stopped``: the scan stopped at ``max_decoded`` bytes, before the end of ``data``.
    """

    frames: list[tuple[int, bytes]]
    end: int
    torn: bool
    damage: list[tuple[int, str]]
    stopped: bool = False


def scan_frames(data: bytes, base: int = 0, max_decoded: int | None = None) -> FrameScan:
    """Decode the frames of ``data``, which starts at offset ``base`` of its file; with
    ``max_decoded``, stop after the frame that brings the decoded bytes to that many."""
    view = memoryview(data)
    frames: list[tuple[int, bytes]] = []
    damage: list[tuple[int, str]] = []
    position = decoded_bytes = 0
    while position < len(data):
        if max_decoded is not None and decoded_bytes >= max_decoded:
            return FrameScan(frames, base + position, False, damage, stopped=True)
        try:
            decoded = _decode_frame(view, position)
        except zstandard.ZstdError as exc:
            decoded, problem = None, f"corrupt zstd frame ({exc})"
        else:
            if decoded is not None:
                payload, used = decoded
                frames.append((base + position, payload))
                position += used
                decoded_bytes += len(payload)
                continue
            problem = "unfinished zstd frame"
        resume_at = _next_decodable_frame(view, data, position + 1)
        if resume_at is None:
            if problem.startswith("corrupt"):
                damage.append((base + position, f"{problem}; {len(data) - position} bytes to the end skipped"))
                return FrameScan(frames, base + len(data), False, damage)
            return FrameScan(frames, base + position, True, damage)
        damage.append((base + position, f"{problem}; {resume_at - position} bytes skipped to the next frame"))
        position = resume_at
    return FrameScan(frames, base + position, False, damage)


def _decode_frame(view: memoryview, start: int) -> tuple[bytes, int] | None:
    """(payload, compressed size) of the frame at ``start``; None if the data ends inside it."""
    decoder = _DECOMPRESSOR.decompressobj()
    parts = []
    position = start
    while position < len(view):
        chunk = view[position:position + _FEED_BYTES]
        parts.append(decoder.decompress(chunk))
        if decoder.eof:
            return b"".join(parts), position + len(chunk) - len(decoder.unused_data) - start
        position += len(chunk)
    return None


def _next_decodable_frame(view: memoryview, data: bytes, start: int) -> int | None:
    """Offset of the next magic number from which a complete frame decodes, or None."""
    candidate = data.find(FRAME_MAGIC, start)
    while candidate >= 0:
        try:
            if _decode_frame(view, candidate) is not None:
                return candidate
        except zstandard.ZstdError:
            pass
        candidate = data.find(FRAME_MAGIC, candidate + 1)
    return None
