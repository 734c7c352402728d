"""The uploader: a local run folder (the spool) copied to a storage URL, on an asyncio loop.

The writer stores through the crash-safe :class:`~rtsave_async.sinks.local.LocalSink`
into the spool; the uploader then copies each new or changed key to ``<url>/<key>``,
in one pass every ``upload_interval`` seconds:

* a file that never changes once published (a save, a closed segment, a checkpoint's
  attachments and JSON) with one create-only PUT (``If-None-Match: *``); if the object
  exists already with the same size (an earlier attempt whose answer was lost, or a
  second uploader), it counts as uploaded; a different size is an :class:`UploadConflict`;
* an open segment (``.open``) as numbered parts (:mod:`rtsave_async.remote.parts`): the
  bytes added since the last part; once the
  segment is published, the whole segment goes up under its final name and its parts
  are removed (a reader prefers the published name while both exist);
* the run's manifests (``run.json``, ``writers/<id>.json``, ``writer_stats.json``) are
  put again whenever their content changed; ``run.json`` is merged with the bucket's
  (its writer list is the union), so many writers, hosts included, share one run prefix.

Checkpoint JSON files wait for their attachments, as in the local layout. A network
fault (server down, timeout, 5xx, throttling, a wrong endpoint or bucket) leaves the key
pending: the uploader waits with exponential backoff and tries again, logging the
first failure of an outage once and the recovery once; nothing ever waits for it but
:meth:`Uploader.finish`. The spool keeps everything, so ``rtsave sync`` can finish
what a killed process left.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from rtsave_async import names
from rtsave_async.remote.filesystem import async_filesystem, close_async_filesystem, scrub
from rtsave_async.remote.parts import Part, contiguous
from rtsave_async.remote.urls import RemoteUrl

logger = logging.getLogger("rtsave_async")

DEFAULT_UPLOAD_INTERVAL = 2.0  # seconds between two upload passes
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
DEFAULT_CONCURRENCY = 8
#: Keys whose content changes in place (replaced, not created once).
MUTABLE_KEYS = (names.RUN_MANIFEST_KEY, names.STATS_KEY)


class UploadConflict(Exception):
    """The bucket holds an object under a key of the spool with other content."""


def is_mutable(key: str) -> bool:
    return key in MUTABLE_KEYS or names.split_key(key)[0] == names.WRITERS_FOLDER


def spool_keys(spool: Path) -> list[str]:
    """Every key in a spool folder: files in the root and in its folders, temp and
    hidden names left out (the layout :class:`~rtsave_async.sinks.local.LocalSink` writes)."""
    keys: list[str] = []
    try:
        entries = sorted(os.scandir(spool), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return keys
    for entry in entries:
        if names.is_temp_name(entry.name):
            continue
        if entry.is_file(follow_symlinks=False):
            keys.append(entry.name)
        elif entry.is_dir(follow_symlinks=False):
            with os.scandir(entry.path) as inner:
                keys.extend(sorted(f"{entry.name}/{item.name}" for item in inner
                                   if item.is_file(follow_symlinks=False) and not names.is_temp_name(item.name)))
    return keys


class Uploader:
    """Copies keys of the spool folder ``spool`` to ``url`` (see the module docstring).

    :param storage_options: options of the fsspec file system (never logged or stored).
    :param upload_interval: seconds between two upload passes (each uploads everything
        new: files, and an open segment's new bytes as one part); a remote reader lags
        the writer by about this much. Default 2.
    :param concurrency: most uploads at once. Default 8.
    """

    def __init__(self, spool: str | os.PathLike[str], url: RemoteUrl, storage_options: Mapping[str, Any] | None = None,
                 *, upload_interval: float = DEFAULT_UPLOAD_INTERVAL, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.spool = Path(spool)
        self.url = url
        self._storage_options = dict(storage_options or {})
        self.upload_interval = upload_interval
        self._concurrency = concurrency
        self._fs: Any = None
        self._pending: dict[str, tuple[str, int]] = {}  # key -> ("upload" or "delete", version), in order
        self._versions = itertools.count()
        self._uploaded: dict[str, object] = {}  # key -> what was uploaded (size, md5 or covered bytes)
        self._covered: dict[str, int] = {}  # open segment -> bytes its parts cover
        self._published_from: dict[str, str] = {}  # published segment -> its .open key
        self._remote: dict[str, tuple[int, str]] | None = None  # key -> (size, etag), when listed
        self._wake = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._catching_up = True  # the background task first lists the bucket and queues the spool
        self._task: asyncio.Task[None] | None = None
        self._hurry = False  # finishing: no waiting between passes
        self._backoff = 0.0
        self._outage_errors = 0
        self.stats: dict[str, Any] = {"uploaded_files": 0, "uploaded_bytes": 0, "parts": 0, "deleted": 0,
                                      "already_there": 0, "errors": 0, "conflicts": 0, "last_error": None}

    # ------------------------------------------------------------------ lifecycle
    async def start(self, run_in_background: bool = True) -> None:
        """Without ``run_in_background``: open the file system on this loop, for calls
        made by the caller (``rtsave sync``). With it: start the task that opens it, lists
        the bucket, queues whatever the spool holds that the bucket lacks (left by an
        earlier writer), then uploads what :meth:`changed` reports. Neither waits for the
        network (botocore may look for credentials, e.g. on an instance metadata service)."""
        self._catching_up = run_in_background
        if run_in_background:
            self._task = asyncio.get_running_loop().create_task(self._run())
        else:
            self._fs = await async_filesystem(self.url, self._storage_options)

    async def finish(self, timeout: float) -> bool:
        """Upload everything pending (open segments' newest bytes too), waiting at most
        ``timeout`` seconds; True when nothing is left only in the spool."""
        self._hurry = True
        self._retry_now.set()
        self._uploaded.pop(names.RUN_MANIFEST_KEY, None)  # merged once more: another host may have replaced it
        if (self.spool / names.RUN_MANIFEST_KEY).is_file():
            self._queue(names.RUN_MANIFEST_KEY, "upload")
        deadline = time.monotonic() + timeout
        while (self._pending or self._catching_up) and time.monotonic() < deadline:
            if self._task is None:
                await self._pass()
                if self._pending and self._backoff:
                    await asyncio.sleep(min(self._backoff, max(0.0, deadline - time.monotonic())))
            else:
                self._wake.set()
                await asyncio.sleep(0.05)
        return not self._pending and not self._catching_up

    async def close(self) -> None:
        """Stop the background task and release the connections (on the same loop)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._fs is not None:
            await close_async_filesystem(self._fs)

    # ------------------------------------------------------------------ what changed
    def changed(self, key: str) -> None:
        """``key`` was created, replaced or appended to in the spool."""
        self._queue(key, "upload")

    def renamed(self, key: str, new_key: str) -> None:
        """``key`` (an open segment) is published as ``new_key``."""
        if key.endswith(names.OPEN_SUFFIX):
            self._published_from[new_key] = key
        self._pending.pop(key, None)
        self._queue(new_key, "upload")

    def deleted(self, key: str) -> None:
        """``key`` was removed from the spool (checkpoint retention): removed remotely too."""
        self._queue(key, "delete")

    def _queue(self, key: str, action: str) -> None:
        if names.is_temp_name(names.split_key(key)[1]):
            return
        self._pending.pop(key, None)  # re-queued at the end: keeps the order of the stores
        self._pending[key] = (action, next(self._versions))
        self._wake.set()

    def queue_spool(self) -> int:
        """Queue every key of the spool (``rtsave sync``, and a writer's start for what an
        earlier writer of this spool left); returns how many."""
        keys = spool_keys(self.spool)
        for key in keys:
            if key not in self._pending:
                self._pending[key] = ("upload", next(self._versions))
            if key.endswith(names.SEGMENT_SUFFIX):  # its parts, if the bucket has some, go once it is up
                self._published_from.setdefault(key, key + names.OPEN_SUFFIX)
        return len(keys)

    async def list_remote(self) -> dict[str, tuple[int, str]]:
        """Every object below the URL -> (size, ETag), read once so that uploads skip
        what is there already."""
        found = await self._fs._find(self.url.path, detail=True)
        prefix = self.url.path.rstrip("/") + "/"
        self._remote = {name[len(prefix):]: (int(info.get("size", 0)), str(info.get("ETag", "")).strip('"'))
                        for name, info in found.items() if name.startswith(prefix)}
        return self._remote

    # ------------------------------------------------------------------ status
    def pending(self) -> list[str]:
        """Keys whose newest content is only in the spool."""
        return list(self._pending)

    def status(self) -> dict[str, Any]:
        return {"url": str(self.url), "spool": str(self.spool), **self.stats, "pending_files": len(self._pending)}

    def only_local_message(self) -> str:
        """What is still only in the spool and the command that finishes the upload."""
        pending = self.pending()
        shown = ", ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
        reason = f" (last error: {self.stats['last_error']})" if self.stats["last_error"] else ""
        return (f"{len(pending) or 'some'} file(s) of {self.url} are only in the local spool {self.spool}"
                f"{': ' + shown if shown else ''}{reason}; finish the upload with: rtsave sync {self.spool} {self.url}")

    # ------------------------------------------------------------------ the work
    async def _run(self) -> None:
        """One pass every ``upload_interval`` seconds over everything new since the last
        one: the network wake-ups of the writer thread come in clusters, so the training
        thread hands the GIL over a few times per interval, not several times per file."""
        while True:
            if self._catching_up:
                try:
                    if self._fs is None:
                        self._fs = await async_filesystem(self.url, self._storage_options)
                    await self.list_remote()
                    self.queue_spool()
                    self._catching_up = False
                except Exception as exc:
                    self._failed(exc)
                    await self._wait_to_retry(self._backoff)
                    continue
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            started = time.monotonic()
            await self._pass()
            pause = self._backoff or max(0.0, started + self.upload_interval - time.monotonic())
            await self._wait_to_retry(pause)

    async def _wait_to_retry(self, seconds: float) -> None:
        """Sleep ``seconds`` (new stores do not cut it short; :meth:`finish` does)."""
        if self._hurry:
            await asyncio.sleep(0.01 if not self._backoff else min(self._backoff, MIN_BACKOFF))
            return
        self._retry_now.clear()
        try:
            await asyncio.wait_for(self._retry_now.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _ready(self) -> list[str]:
        """Pending keys that may go now: all but checkpoint JSON files one of whose
        attachments is still pending (they go in the next pass)."""
        pending_stems = {key.split(".", 1)[0] for key in self._pending
                         if names.split_key(key)[0] == names.CHECKPOINTS and not key.endswith(names.JSON_SUFFIX)}
        return [key for key, (action, _) in self._pending.items()
                if not (action == "upload" and names.split_key(key)[0] == names.CHECKPOINTS
                        and key.endswith(names.JSON_SUFFIX) and key.split(".", 1)[0] in pending_stems)]

    async def _pass(self) -> None:
        """Try each ready key once, ``concurrency`` at a time; stop at the first failure.
        A checkpoint JSON whose attachments went up in this pass goes in this pass too."""
        tried: set[str] = set()
        while ready := [key for key in self._ready() if key not in tried]:
            tried.update(ready)
            for start in range(0, len(ready), self._concurrency):
                chunk = [(key, self._pending[key]) for key in ready[start:start + self._concurrency]
                         if key in self._pending]
                if not self._settle(chunk, await asyncio.gather(
                        *(self._one(key, action) for key, (action, _) in chunk), return_exceptions=True)):
                    return
        if tried:
            self._recovered()

    def _settle(self, chunk: list[tuple[str, tuple[str, int]]], results: list[object]) -> bool:
        """Drop the keys done from the pending ones; False (counted, backoff) after a failure."""
        failure = None
        for (key, entry), result in zip(chunk, results):
            if result is None or isinstance(result, UploadConflict):
                if self._pending.get(key) == entry:  # not changed again meanwhile
                    del self._pending[key]
                if result is not None:
                    self._conflict(result)
            elif not isinstance(result, Exception):
                raise result
            else:
                failure = result
        if failure is not None:
            self._failed(failure)
            return False
        return True

    async def _one(self, key: str, action: str) -> None:
        if action == "delete":
            await self._delete(key)
        elif key.endswith(names.OPEN_SUFFIX):
            await self._upload_parts(key)
        elif is_mutable(key):
            await self._upload_mutable(key)
        else:
            await self._upload_once(key)

    def _local(self, key: str, start: int = 0) -> bytes | None:
        """The spool's bytes of ``key`` from ``start``; None if it is gone (renamed or deleted)."""
        try:
            with open(self.spool / key, "rb") as handle:
                handle.seek(start)
                return handle.read()
        except (FileNotFoundError, IsADirectoryError):
            return None

    async def _upload_once(self, key: str) -> None:
        data = self._local(key)
        if data is None or self._uploaded.get(key) == len(data):
            return
        remote = self._remote.get(key) if self._remote is not None else None
        if remote is not None and remote[0] == len(data):
            self.stats["already_there"] += 1
        if remote is None:
            try:
                await self._fs._pipe_file(self.url.join(key), data, mode="create")
                self._count(data)
            except FileExistsError:
                info = await self._fs._info(self.url.join(key))
                remote = (int(info["size"]), str(info.get("ETag", "")).strip('"'))
        if remote is not None and remote[0] != len(data):
            raise UploadConflict(f"{self.url.join(key)} holds {remote[0]} bytes, the spool's "
                                 f"{self.spool / key} {len(data)}: not overwritten")
        self._uploaded[key] = len(data)
        opened = self._published_from.pop(key, None)
        if opened is not None:
            await self._remove_parts(opened)

    async def _remove_parts(self, open_key: str) -> None:
        known = self._covered.pop(open_key, None)
        listed = self._remote is not None and any(name.startswith(names.parts_folder(open_key) + "/")
                                                  for name in self._remote)
        if known or listed:
            try:
                await self._fs._rm(self.url.join(names.parts_folder(open_key)), recursive=True)
            except FileNotFoundError:
                pass

    async def _upload_mutable(self, key: str) -> None:
        data = self._local(key)
        if data is None:
            return
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if self._uploaded.get(key) == digest:
            return
        if key == names.RUN_MANIFEST_KEY:
            await self._merge_run_manifest(data)
        elif self._remote is None or self._remote.get(key, (None, None))[1] != digest:
            await self._fs._pipe_file(self.url.join(key), data)
            self._count(data)
        self._uploaded[key] = digest

    async def _merge_run_manifest(self, data: bytes) -> None:
        """``run.json`` in the bucket: created from the spool's, or its writers extended."""
        local = orjson.loads(data)
        path = self.url.join(names.RUN_MANIFEST_KEY)
        for _ in range(3):
            try:
                remote = orjson.loads(await self._fs._cat_file(path))
            except FileNotFoundError:
                try:
                    await self._fs._pipe_file(path, data, mode="create")
                    self._count(data)
                    return
                except FileExistsError:
                    continue  # another writer created it just now: merge with that one
            except orjson.JSONDecodeError:
                raise UploadConflict(f"{self.url}/{names.RUN_MANIFEST_KEY} is not a run manifest") from None
            if remote.get("format") != local.get("format"):
                raise UploadConflict(f"{self.url} holds a run in format {remote.get('format')!r}, the spool "
                                     f"{self.spool} one in {local.get('format')!r}")
            writers = list(remote.get("writers", []))
            missing = [writer for writer in local.get("writers", []) if writer not in writers]
            if missing:
                merged = orjson.dumps({**remote, "writers": writers + missing}, option=orjson.OPT_INDENT_2)
                await self._fs._pipe_file(path, merged)
                self._count(merged)
            return

    async def _upload_parts(self, key: str) -> None:
        covered = self._covered.get(key)
        if covered is None:
            covered = self._covered[key] = await self.remote_coverage(key)
        data = self._local(key, covered)
        if not data:
            return
        try:
            await self._fs._pipe_file(self.url.join(names.part_key(key, covered)), data, mode="create")
        except FileExistsError:  # another uploader stored a part here: count from what the bucket has
            self._covered.pop(key, None)
            return
        self._count(data, part=True)
        self._covered[key] = covered + len(data)

    async def exists(self, key: str) -> bool:
        """Whether the bucket holds an object under ``key``."""
        return await self._fs._exists(self.url.join(key))

    def uploaded_coverage(self, key: str) -> int | None:
        """How many bytes of open segment ``key`` its parts hold, as far as this uploader knows."""
        return self._covered.get(key)

    async def remote_coverage(self, key: str) -> int:
        """How many bytes of open segment ``key`` the bucket's parts cover from 0 on."""
        try:
            entries = await self._fs._ls(self.url.join(names.parts_folder(key)), detail=True, refresh=True)
        except FileNotFoundError:
            return 0
        parts = []
        for entry in entries:
            offset = names.part_offset(entry["name"].rstrip("/").rpartition("/")[2])
            if offset is not None and entry["type"] == "file":
                parts.append(Part(offset, int(entry["size"]), entry["name"]))
        return contiguous(parts)[1]

    async def _delete(self, key: str) -> None:
        self._uploaded.pop(key, None)
        try:
            await self._fs._rm_file(self.url.join(key))
        except FileNotFoundError:
            return
        self.stats["deleted"] += 1

    # ------------------------------------------------------------------ bookkeeping
    def _count(self, data: bytes, part: bool = False) -> None:
        self.stats["uploaded_bytes"] += len(data)
        self.stats["parts" if part else "uploaded_files"] += 1

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return scrub(f"{type(exc).__name__}: {text}", self._storage_options)

    def _failed(self, exc: BaseException) -> None:
        self.stats["errors"] += 1
        self.stats["last_error"] = self._describe(exc)
        self._backoff = min(MAX_BACKOFF, max(MIN_BACKOFF, self._backoff * 2))
        self._outage_errors += 1
        if self._outage_errors == 1:
            logger.error("rtsave_async: could not upload to %s (%s); retrying with backoff, everything stays in "
                         "the local spool %s; later errors are only counted", self.url, self.stats["last_error"],
                         self.spool)

    def _recovered(self) -> None:
        if self._outage_errors:
            logger.warning("rtsave_async: uploads to %s resumed after %d failed attempt(s)", self.url,
                           self._outage_errors)
        self._outage_errors = 0
        self._backoff = 0.0

    def _conflict(self, exc: UploadConflict) -> None:
        self.stats["conflicts"] += 1
        self.stats["last_error"] = str(exc)
        logger.error("rtsave_async: %s", exc)
