"""RunStore doubles: a local store that counts what the readers ask of it."""

from __future__ import annotations

from collections import Counter

from rtsave_async.readers.store import LocalRunStore


class CountingRunStore(LocalRunStore):
    """A :class:`LocalRunStore` that counts bytes read per key (``bytes_read``)."""

    def __init__(self, root):
        super().__init__(root)
        self.bytes_read: Counter[str] = Counter()

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().read(key, start, end)
        self.bytes_read[key.removesuffix(".open")] += len(data)
        return data
