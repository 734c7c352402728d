"""Test doubles of the storage interface: sinks that are slow, held shut or failing.

Each wraps a real sink (a :class:`LocalSink` by default) and changes one thing about
how its stores behave; everything else is the wrapped sink's own behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from rtsave_async.names import JSON_SUFFIX
from rtsave_async.sinks import LocalSink, Sink


class DelegatingSink(Sink):
    """Forwards every call to ``inner``; subclasses override :meth:`before_store`.

    ``data_stores`` counts the creates, replaces and appends of category data (not the
    run's manifests) that went through.
    """

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.supports_append = inner.supports_append
        self.data_stores = 0

    async def before_store(self, key: str) -> None:
        """Runs before each create, replace and append of ``key``."""

    async def _store(self, key: str, store: Callable[[], Awaitable[None]]) -> None:
        await self.before_store(key)
        await store()
        self.data_stores += _is_data(key)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def create(self, key: str, data: bytes) -> None:
        await self._store(key, lambda: self.inner.create(key, data))

    async def replace(self, key: str, data: bytes) -> None:
        await self._store(key, lambda: self.inner.replace(key, data))

    async def append(self, key: str, data: bytes) -> None:
        await self._store(key, lambda: self.inner.append(key, data))

    async def rename(self, key: str, new_key: str) -> None:
        await self.inner.rename(key, new_key)

    async def list(self, prefix: str) -> list[str]:
        return await self.inner.list(prefix)

    async def read(self, key: str) -> bytes:
        return await self.inner.read(key)

    async def size(self, key: str) -> int:
        return await self.inner.size(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def url(self, key: str) -> str:
        return self.inner.url(key)

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        async with self.inner.exclusive(key):
            yield


def _is_data(key: str) -> bool:
    """A category's data (not the run's manifests, which the writer also stores)."""
    return "/" in key and not key.startswith("writers/")


class GatedSink(DelegatingSink):
    """Holds data stores shut until :meth:`open`: the writer thread waits inside the
    first one (``entered`` is set then), as on a disk that stopped answering.

    :param only: hold only stores of keys containing this text; others go through.
    :param blocking: True blocks the writer's thread (a stalled system call); False
        only awaits (a stalled network store), so other stores in flight proceed.
    """

    def __init__(self, inner: Sink, only: str = "", blocking: bool = True) -> None:
        super().__init__(inner)
        self.only = only
        self.blocking = blocking
        self.entered = threading.Event()
        self._opened = threading.Event()

    async def before_store(self, key: str) -> None:
        if not _is_data(key) or self.only not in key:
            return
        self.entered.set()
        if self.blocking:
            self._opened.wait()
        while not self._opened.is_set():
            await asyncio.sleep(0.005)

    def open(self) -> None:
        self._opened.set()


class SlowSink(DelegatingSink):
    """Each data store takes ``seconds`` longer; ``blocking=True`` holds the writer's
    thread (a slow local disk), False only awaits (a slow network store, which other
    stores in flight can overlap). ``seconds=None``: never finishes."""

    def __init__(self, inner: Sink, seconds: float | None, blocking: bool = True) -> None:
        super().__init__(inner)
        self.seconds = seconds
        self.blocking = blocking
        self.concurrent = 0
        self.peak_concurrent = 0

    async def before_store(self, key: str) -> None:
        if not _is_data(key):
            return
        self.concurrent += 1
        self.peak_concurrent = max(self.peak_concurrent, self.concurrent)
        try:
            if self.seconds is None:
                threading.Event().wait()
            elif self.blocking:
                time.sleep(self.seconds)
            else:
                await asyncio.sleep(self.seconds)
        finally:
            self.concurrent -= 1


class FailingSink(DelegatingSink):
    """Data stores of keys ending in ``suffix`` fail with ENOSPC (a disk that fills up
    just before a checkpoint's JSON); ``hang=True`` instead blocks there forever and
    prints ``attachments stored`` first (for a parent process to kill us)."""

    def __init__(self, inner: Sink, suffix: str = JSON_SUFFIX, hang: bool = False) -> None:
        super().__init__(inner)
        self.suffix = suffix
        self.hang = hang

    async def before_store(self, key: str) -> None:
        if not _is_data(key) or not key.endswith(self.suffix):
            return
        if self.hang:
            print("attachments stored", flush=True)
            threading.Event().wait()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.url(key))


class StaleListingSink(DelegatingSink):
    """Its first listing of each folder is empty: as if it had looked before another
    writer in the same folder created its files (the race two writers can run)."""

    def __init__(self, inner: Sink) -> None:
        super().__init__(inner)
        self._listed: set[str] = set()

    async def list(self, prefix: str) -> list[str]:
        if prefix not in self._listed:
            self._listed.add(prefix)
            return []
        return await self.inner.list(prefix)


class DyingSink(DelegatingSink):
    """Its listings of a category raise ``SystemExit``: something the writer thread does
    not survive (a sink is not a hook or an encoder), to show that the writer says so."""

    category = "custom"

    async def list(self, prefix: str) -> list[str]:
        if prefix == self.category:
            raise SystemExit("the sink gave up")
        return await self.inner.list(prefix)


class VanishingRootSink(DelegatingSink):
    """Removes the whole save_dir (``rm -rf``) just before the first store of a key ending
    in ``suffix``: a checkpoint's attachments are stored, then the folder is gone."""

    def __init__(self, inner: LocalSink, suffix: str = JSON_SUFFIX) -> None:
        super().__init__(inner)
        self.suffix = suffix
        self.removed = False

    async def before_store(self, key: str) -> None:
        if _is_data(key) and key.endswith(self.suffix) and not self.removed:
            self.removed = True
            shutil.rmtree(self.inner.root)


class NoHardLinkLocalSink(LocalSink):
    """A :class:`LocalSink` on a file system without ``renameat2(RENAME_NOREPLACE)`` or
    hard links (vfat, some network and FUSE file systems): both answer ENOTSUP, as such a
    file system does, so every publish takes the last fallback."""

    @staticmethod
    def _rename_no_replace(source: str, target: str) -> None:
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP), target)

    @staticmethod
    def _hard_link(source: str, target: str) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), target)
