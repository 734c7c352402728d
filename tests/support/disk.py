"""Disk troubles for tests: a file system with no space left."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fill_filesystem(path: Path) -> None:
    """Grow ``path`` until its filesystem has no free block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            with contextlib.suppress(OSError):
                while os.write(fd, chunk):
                    pass
    finally:
        os.close(fd)
