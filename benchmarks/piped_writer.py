"""A writer stand-in that moves storing out of the training process, for ``bench_training``'s (p).

The training thread serializes each save's segment line with orjson (``_rtsave``
metadata included, as the real writer writes it) and writes it down a pipe; a child
process (``python -m benchmarks.piped_writer <save_dir>``) compresses each category's
lines of one read into one zstd frame, at the segment format's level, and appends it to
one file per category. There is no queue, no back-pressure, no flush mark and no
statistics: it is the least a writer in another process could cost the training
process, to compare with the writer thread.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import zstandard

from rtsave_async.formats.metadata import segment_line, snapshot_metadata
from rtsave_async.formats.segments import ZSTD_LEVEL
from rtsave_async.names import SEGMENT_SUFFIX, file_prefix, key, snapshot_stem

_PIPE_BYTES = 1024 * 1024  # Linux allows an unprivileged pipe up to 1 MiB (/proc/sys/fs/pipe-max-size)
_LENGTH_BYTES = 4
_READ_BYTES = 1024 * 1024
READY = b"\n"  # the child's first output: imports done, reading


class PipedSegmentWriter:
    """Serializes on submit and pipes each line to a child process that stores it."""

    def __init__(self, save_dir: Path, writer_id: str = "piped-writer"):
        self.save_dir = Path(save_dir)
        self.exit_timeout = 10.0
        self.drain_interval = 0.0  # each submit goes down the pipe at once: the callback holds no save back
        self._writer_id = writer_id
        self._child = subprocess.Popen([sys.executable, "-m", "benchmarks.piped_writer", str(self.save_dir)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       cwd=Path(__file__).resolve().parents[1])
        assert self._child.stdin is not None and self._child.stdout is not None
        # Wait for the child's imports, which would otherwise compete with the first seconds of training.
        if self._child.stdout.read(1) != READY:
            raise RuntimeError(f"the piped writer's child exited with {self._child.wait()} before it was ready")
        self._fd = self._child.stdin.fileno()
        fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._sequences: dict[str, int] = {}
        self._bytes_piped = 0

    def submit(self, category: str, records: Any, deadline: float | None = None) -> bool:
        """Serialize ``records`` with its metadata and write it down the pipe (a callable payload is called first)."""
        records = records({}) if callable(records) else records
        sequence = self._sequences.get(category, 0) + 1
        self._sequences[category] = sequence
        line = orjson.dumps(segment_line(records, snapshot_metadata(self._writer_id, sequence, time.time(), category)),
                            option=orjson.OPT_SERIALIZE_NUMPY)
        message = category.encode() + b"\0" + line
        os.write(self._fd, len(message).to_bytes(_LENGTH_BYTES, "little") + message)
        self._bytes_piped += len(message)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> dict[str, Any]:
        """End the pipe and wait for the child to store the rest."""
        assert self._child.stdin is not None
        self._child.stdin.close()
        if self._child.wait(timeout=60) != 0:
            raise RuntimeError(f"the piped writer's child exited with {self._child.returncode}")
        return self.stats()

    def stats(self) -> dict[str, Any]:
        return {"written": sum(self._sequences.values()), "dropped": 0, "failed": 0,
                "bytes_written": self._bytes_piped}


def serve(save_dir: Path, source: int = 0, ready: int = 1) -> None:
    """The child: say :data:`READY` on ``ready``, then read messages from ``source`` until it
    ends, appending each read's lines per category."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True)
    files: dict[str, Any] = {}
    pending = b""
    os.write(ready, READY)
    try:
        while chunk := os.read(source, _READ_BYTES):
            pending += chunk
            lines: dict[str, list[bytes]] = {}
            position = 0
            while len(pending) - position >= _LENGTH_BYTES:
                length = int.from_bytes(pending[position:position + _LENGTH_BYTES], "little")
                end = position + _LENGTH_BYTES + length
                if end > len(pending):
                    break
                category, line = pending[position + _LENGTH_BYTES:end].split(b"\0", 1)
                lines.setdefault(category.decode(), []).append(line)
                position = end
            pending = pending[position:]
            for category, category_lines in lines.items():
                if category not in files:
                    stem = snapshot_stem(file_prefix(category), time.time(), 1, None)
                    path = save_dir / key(category, stem + SEGMENT_SUFFIX)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    files[category] = path.open("ab")
                files[category].write(compressor.compress(b"\n".join(category_lines) + b"\n"))
    finally:
        for handle in files.values():
            handle.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
