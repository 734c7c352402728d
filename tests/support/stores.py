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


class StaleListingRunStore(LocalRunStore):
    """A :class:`LocalRunStore` whose listings can be frozen (``freeze()``): it then keeps
    answering what it listed before, as an object store's eventually consistent listing
    or a listing taken just before a rename would."""

    def __init__(self, root):
        super().__init__(root)
        self._frozen: dict[str, list[str]] | None = None
        self._last: dict[str, list[str]] = {}

    def freeze(self) -> None:
        self._frozen = dict(self._last)

    def thaw(self) -> None:
        self._frozen = None

    def list(self, prefix: str = "") -> list[str]:
        if self._frozen is not None and prefix in self._frozen:
            return self._frozen[prefix]
        self._last[prefix] = super().list(prefix)
        return self._last[prefix]
