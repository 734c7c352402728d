"""An in-memory sink: the whole run held in a dict, for tests and short-lived tools."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator

from rtsave_async.names import is_temp_name, split_key
from rtsave_async.sinks.base import Sink


class MemorySink(Sink):
    """Keeps every key's bytes in :attr:`objects` (key -> bytes).

    :param name: shown in :meth:`url` (``memory://<name>/<key>``). Default ``"run"``.
    """

    supports_append = True

    def __init__(self, name: str = "run") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self._exclusive = asyncio.Lock()

    async def create(self, key: str, data: bytes) -> None:
        if key in self.objects:
            raise FileExistsError(errno.EEXIST, "key exists", self.url(key))
        self.objects[key] = bytes(data)

    async def replace(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    async def append(self, key: str, data: bytes) -> None:
        self.objects[key] = self.objects.get(key, b"") + data

    async def rename(self, key: str, new_key: str) -> None:
        if new_key in self.objects:
            raise FileExistsError(errno.EEXIST, "key exists", self.url(new_key))
        self.objects[new_key] = self.objects.pop(self._existing(key))

    async def list(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects
                      if split_key(key)[0] == prefix and not is_temp_name(split_key(key)[1]))

    async def read(self, key: str) -> bytes:
        return self.objects[self._existing(key)]

    async def size(self, key: str) -> int:
        return len(self.objects[self._existing(key)])

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        async with self._exclusive:
            yield

    def url(self, key: str) -> str:
        return f"memory://{self.name}/{key}"

    def _existing(self, key: str) -> str:
        if key not in self.objects:
            raise FileNotFoundError(errno.ENOENT, "no such key", self.url(key))
        return key
