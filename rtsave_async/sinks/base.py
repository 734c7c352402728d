"""The storage interface the writer talks to: relative string keys, async calls.

Modelled on fsspec's ``AbstractFileSystem`` (a narrow core a backend implements): a
backend stores bytes under keys such as ``"episodes/episodes_..._00000001_a1b2c3.json"``
or ``"run.json"``. Every coroutine runs on the writer's event loop; ``url`` is cheap and
synchronous. Keys come from :mod:`rtsave_async.names`; a sink never invents one.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator


class Sink(abc.ABC):
    """Where a writer stores its run.

    ``supports_append``: whether :meth:`append` works (segment formats need it).
    """

    supports_append: bool = False

    async def start(self) -> None:
        """Called once on the writer's loop before any other call (e.g. clean up what a
        crashed writer left). Default: nothing."""

    async def finish(self, timeout: float) -> None:
        """Called once on the writer's loop after the last store, before :meth:`close`,
        with the seconds left of the writer's ``exit_timeout``: a sink that copies
        elsewhere in the background (:class:`~rtsave_async.sinks.spooled.SpooledSink`)
        waits for the copy that long and says what is left. Default: nothing."""

    async def close(self) -> None:
        """Called once on the writer's loop after the last call. Default: nothing."""

    def upload_status(self) -> dict | None:
        """For a sink that uploads in the background: its counters (uploaded, pending,
        errors, spool folder) for the writer's stats. Default None."""
        return None

    @abc.abstractmethod
    async def create(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` whole or not at all; ``FileExistsError`` if
        ``key`` exists (never overwrites)."""

    @abc.abstractmethod
    async def replace(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, atomically swapping out any previous content."""

    async def append(self, key: str, data: bytes) -> None:
        """Add ``data`` at the end of ``key`` (created if missing) in one piece: after a
        crash, ``key`` ends at a boundary between appends or inside the last one only."""
        raise NotImplementedError(f"{type(self).__name__} cannot append")

    @abc.abstractmethod
    async def rename(self, key: str, new_key: str) -> None:
        """Give ``key``'s content the name ``new_key``; ``FileExistsError`` if
        ``new_key`` exists (used to publish a closed segment)."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> list[str]:
        """The keys of the stored objects directly in folder ``prefix`` (``""``: the
        root), sorted; temp and hidden names are left out. Empty if there is none."""

    @abc.abstractmethod
    async def read(self, key: str) -> bytes:
        """The content of ``key``; ``FileNotFoundError`` if there is none."""

    async def size(self, key: str) -> int:
        """How many bytes ``key`` holds; ``FileNotFoundError`` if there is none.
        Default: the length of :meth:`read` (a backend with a cheaper way overrides it)."""
        return len(await self.read(key))

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; a key that is already gone is no error."""

    @abc.abstractmethod
    def url(self, key: str) -> str:
        """Where ``key`` lives, for people and readers (a path for local storage)."""

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        """Held around a read-modify-replace of ``key`` so that writers sharing the
        sink do not lose each other's updates. Default: no lock."""
        yield
