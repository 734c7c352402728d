"""Build runs in the ``jsonl.zst`` layout byte for byte as STORAGE_SPEC.md describes.

The readers are tested against this builder (and the real writer for the json format):
it writes ``run.json``, ``writers/<id>.json`` and per category segments of zstd frames
holding ``{"_rtsave": {...}, "data": ...}`` lines, one frame per :meth:`flush`, and
can leave segments open, torn or damaged.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import orjson
import zstandard

from rtsave_async.formats.segments import ZSTD_LEVEL
from rtsave_async.names import (
    OPEN_SUFFIX,
    RUN_MANIFEST_KEY,
    SEGMENT_SUFFIX,
    file_prefix,
    snapshot_stem,
    utc_iso,
    writer_manifest_key,
    writer_tag,
)

_COMPRESSOR = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True)
_EPOCH = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def encode_frame(lines: list[bytes]) -> bytes:
    """One zstd frame holding ``lines`` (each ending in ``\\n``)."""
    return _COMPRESSOR.compress(b"".join(lines))


class SegmentRunWriter:
    """One writer of a ``jsonl.zst`` run under ``root``.

    Save times come from a clock starting at ``start`` (epoch s) and advancing by
    ``tick`` seconds per save, so two writers' saves interleave as the test decides.
    """

    def __init__(self, root: Path, writer_id: str, start: float = _EPOCH, tick: float = 1e-3):
        self.root, self.writer_id, self.tag = Path(root), writer_id, writer_tag(writer_id)
        self.clock, self.tick = start, tick
        self._pending: dict[str, list[bytes]] = {}
        self._open: dict[str, Path] = {}
        self._segment_seq: dict[str, int] = {}
        self._save_seq: dict[str, int] = {}
        self._register()

    def save(self, category: str, data: Any, at: float | None = None) -> dict[str, Any]:
        """Buffer one save (a line of the next frame); returns its ``_rtsave``."""
        self.clock = at if at is not None else self.clock + self.tick
        seq = self._save_seq[category] = self._save_seq.get(category, 0) + 1
        metadata = {"writer": self.writer_id, "seq": seq, "time": utc_iso(self.clock), "category": category}
        self._pending.setdefault(category, []).append(orjson.dumps({"_rtsave": metadata, "data": data}) + b"\n")
        return metadata

    def flush(self, category: str | None = None) -> None:
        """Append the buffered lines of ``category`` (or all) as one frame each."""
        for name in [category] if category else list(self._pending):
            lines = self._pending.pop(name, [])
            if lines:
                with open(self.open_segment(name), "ab") as handle:
                    handle.write(encode_frame(lines))

    def open_segment(self, category: str) -> Path:
        """The ``.open`` segment of ``category`` (created empty if there is none)."""
        if category not in self._open:
            seq = self._segment_seq[category] = self._segment_seq.get(category, 0) + 1
            stem = snapshot_stem(file_prefix(category), self.clock, seq, self.tag)
            path = self.root / category / (stem + SEGMENT_SUFFIX + OPEN_SUFFIX)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            self._open[category] = path
        return self._open[category]

    def rotate(self, category: str) -> Path:
        """Flush and publish the open segment (rename without ``.open``); its final path."""
        self.flush(category)
        path = self._open.pop(category)
        final = path.with_name(path.name.removesuffix(OPEN_SUFFIX))
        path.rename(final)
        return final

    def close(self, stats: dict[str, Any] | None = None) -> None:
        """Publish every open segment and mark the writer closed in its manifest."""
        self.flush()
        for category in list(self._open):
            self.rotate(category)
        self._write_manifest(closed=True, stats=stats or {})

    def _register(self) -> None:
        manifest_path = self.root / RUN_MANIFEST_KEY
        manifest = (orjson.loads(manifest_path.read_bytes()) if manifest_path.exists() else
                    {"format_version": 1, "format": "jsonl.zst", "created": utc_iso(self.clock), "writers": []})
        manifest["writers"].append(self.writer_id)
        self.root.mkdir(parents=True, exist_ok=True)
        manifest_path.write_bytes(orjson.dumps(manifest))
        self._write_manifest(closed=False, stats={})

    def _write_manifest(self, closed: bool, stats: dict[str, Any]) -> None:
        path = self.root / writer_manifest_key(self.writer_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps({"writer": self.writer_id, "host": "test", "pid": 0,
                                       "started": utc_iso(_EPOCH), "format": "jsonl.zst", "closed": closed,
                                       "stats": stats, "updated": utc_iso(self.clock)}))


def frame_offsets(path: Path) -> list[int]:
    """Byte offsets at which the frames of a segment start."""
    data, offsets, position = path.read_bytes(), [], 0
    while position < len(data):
        offsets.append(position)
        decoder = zstandard.ZstdDecompressor().decompressobj()
        decoder.decompress(data[position:])
        position = len(data) - len(decoder.unused_data)
    return offsets
