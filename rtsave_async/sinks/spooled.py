"""A run in object storage, written through a local spool folder and uploaded behind.

Every store goes to a :class:`~rtsave_async.sinks.local.LocalSink` in the spool first
(crash-safe, as fast as a local run), then the :class:`~rtsave_async.upload.Uploader`
copies it to the URL on the same loop, in the background. Reads, listings and locks
are the spool's: it holds the whole run as this host wrote it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from rtsave_async.remote.filesystem import check_backend
from rtsave_async.remote.urls import default_spool_dir, parse_url
from rtsave_async.sinks.base import Sink
from rtsave_async.sinks.local import LocalSink
from rtsave_async.upload.uploader import DEFAULT_UPLOAD_INTERVAL, Uploader

logger = logging.getLogger("rtsave_async")


class SpooledSink(Sink):
    """Stores key ``k`` under ``<url>/k`` by way of ``<spool_dir>/k``.

    :param url: e.g. ``"s3://bucket/prefix/run"`` (any fsspec protocol whose backend is
        installed; ``MissingExtraError`` naming the extra otherwise).
    :param spool_dir: the local folder; default :func:`~rtsave_async.remote.default_spool_dir`.
    :param storage_options: options of the fsspec file system; default: the backend's
        environment and config (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ...).
    :param upload_interval: seconds between uploads of an open segment's new bytes. Default 2.
    :param durable, io: as for :class:`LocalSink` (the spool).
    """

    supports_append = True

    def __init__(self, url: str, spool_dir: str | os.PathLike[str] | None = None, *,
                 storage_options: Mapping[str, Any] | None = None, upload_interval: float = DEFAULT_UPLOAD_INTERVAL,
                 durable: bool = False, io: str = "direct") -> None:
        self.remote = parse_url(url)
        check_backend(self.remote)
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir(self.remote)
        self.local = LocalSink(self.spool_dir, durable=durable, io=io)
        self.uploader = Uploader(self.spool_dir, self.remote, storage_options, upload_interval=upload_interval)

    async def start(self) -> None:
        await self.local.start()
        await self.uploader.start()

    async def finish(self, timeout: float) -> None:
        if not await self.uploader.finish(timeout):
            logger.warning("rtsave_async: %s", self.uploader.only_local_message())

    async def close(self) -> None:
        try:
            await self.local.close()
        finally:
            await self.uploader.close()

    def upload_status(self) -> dict[str, Any]:
        return self.uploader.status()

    async def create(self, key: str, data: bytes) -> None:
        await self.local.create(key, data)
        self.uploader.changed(key)

    async def replace(self, key: str, data: bytes) -> None:
        await self.local.replace(key, data)
        self.uploader.changed(key)

    async def append(self, key: str, data: bytes) -> None:
        await self.local.append(key, data)
        self.uploader.changed(key)

    async def rename(self, key: str, new_key: str) -> None:
        await self.local.rename(key, new_key)
        self.uploader.renamed(key, new_key)

    async def list(self, prefix: str) -> list[str]:
        return await self.local.list(prefix)

    async def read(self, key: str) -> bytes:
        return await self.local.read(key)

    async def size(self, key: str) -> int:
        return await self.local.size(key)

    async def delete(self, key: str) -> None:
        await self.local.delete(key)
        self.uploader.deleted(key)

    def url(self, key: str) -> str:
        return str(self.remote.child(key)) if key else str(self.remote)

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        async with self.local.exclusive(key):
            yield
