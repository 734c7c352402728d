"""Local-disk sink: atomic, never-overwriting files and one-piece appends under a root.

A file is written to a hidden temp name in its final folder, optionally fsynced, then
published by a rename that cannot overwrite: ``renameat2(RENAME_NOREPLACE)`` where the
kernel and file system have it, else ``os.link`` (which fails if the final name
exists) and removing the temp name, else (no hard links either: vfat, some network and
FUSE file systems) a check-and-rename under an ``fcntl`` lock every writer takes. A reader therefore never sees a torn file under a final name, and a crash
leaves at most a temp file, removed by :meth:`LocalSink.start` at the next start.
Appends go through one ``O_APPEND`` descriptor per key with one ``os.write`` each, so
a killed process leaves at most the last append torn; a failed append is cut off again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiofiles.os

from rtsave_async.names import PUBLISH_LOCK_NAME, RUN_LOCK_NAME, is_temp_name, split_key, temp_name, temp_owner_pid
from rtsave_async.sinks.base import Sink

IO_BACKENDS = ("direct", "aiofiles")
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
_NO_RENAME_NOREPLACE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
if _renameat2 is not None:
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
_Result = TypeVar("_Result")


class LocalSink(Sink):
    """Stores key ``"folder/name"`` as the file ``<root>/folder/name``.

    :param root: the save directory; created when first needed.
    :param durable: fsync each file, each append and their folder before reporting them
        stored (survives power loss, costs a disk flush each). Default False: files are
        still never torn, but the newest may be lost with the page cache.
    :param io: ``"direct"`` runs the system calls on the writer thread; ``"aiofiles"``
        awaits them in aiofiles' thread pool (see benchmarks/RESULTS.md for which is
        faster). Default ``"direct"``.
    """

    supports_append = True

    def __init__(self, root: str | os.PathLike[str], durable: bool = False, io: str = "direct") -> None:
        if io not in IO_BACKENDS:
            raise ValueError(f"io must be one of {IO_BACKENDS}, got {io!r}")
        self.root = Path(root)
        self.durable = durable
        self.io = io
        self._folders: dict[str, str] = {}  # folder key -> its path, once created
        self._append_fds: dict[str, int] = {}
        self._renames_without_replace = _renameat2 is not None
        self._hard_links = True
        self._exclusive = asyncio.Lock()  # tasks of one loop; the fcntl lock keeps other writers out

    # ------------------------------------------------------------------ interface
    async def start(self) -> None:
        """Remove temp files left by processes that no longer run (root and its folders)."""
        await self._io(self._clean_stale_temps)

    async def close(self) -> None:
        for key in list(self._append_fds):
            self._close_append(key)

    async def create(self, key: str, data: bytes) -> None:
        await self._store(key, data, self._publish)

    async def replace(self, key: str, data: bytes) -> None:
        await self._store(key, data, os.replace)

    async def append(self, key: str, data: bytes) -> None:
        await self._retry_in_new_folder(key, lambda: self._io(self._append, key, data))

    async def rename(self, key: str, new_key: str) -> None:
        self._close_append(key)
        await self._io(self._publish, self.url(key), self.url(new_key))
        if self.durable:
            await self._io(_fsync_directory, os.path.dirname(self.url(new_key)))

    async def list(self, prefix: str) -> list[str]:
        folder = self.url(prefix)
        try:
            entries = await self._io(lambda: [entry.name for entry in os.scandir(folder)
                                              if entry.is_file(follow_symlinks=False)])
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(f"{prefix}/{name}" if prefix else name for name in entries if not is_temp_name(name))

    async def read(self, key: str) -> bytes:
        return await self._io(Path(self.url(key)).read_bytes)

    async def size(self, key: str) -> int:
        return (await self._io(os.stat, self.url(key))).st_size

    async def delete(self, key: str) -> None:
        """Remove ``key``; PermissionError if its folder is a symlink leading out of the root
        (retention must never delete someone else's files through it)."""
        self._close_append(key)
        path = self.url(key)
        if not self._inside_root(os.path.dirname(path)):
            raise PermissionError(errno.EPERM, "not deleting through a symlinked folder that leaves the save_dir",
                                  path)
        await self._io(_remove_quietly, path)

    def url(self, key: str) -> str:
        return os.path.join(self.root, key) if key else str(self.root)

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        """An ``fcntl`` lock on ``<root>/.run.lock`` (one lock for the run's shared files)."""
        async with self._exclusive:
            self._folder("")
            fd = os.open(os.path.join(self.root, RUN_LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                await self._io(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    # ------------------------------------------------------------------ helpers
    async def _io(self, function: Callable[..., _Result], *args: Any) -> _Result:
        if self.io == "aiofiles":
            try:
                return await aiofiles.os.wrap(function)(*args)
            except RuntimeError as exc:  # the thread pool refuses work during interpreter shutdown
                if "shutdown" not in str(exc):
                    raise
        return function(*args)

    async def _retry_in_new_folder(self, key: str, operation: Callable[[], Any]) -> None:
        """Run ``operation``; if its folder was removed meanwhile, create it and run it again."""
        folder = split_key(key)[0]
        self._folder(folder)
        try:
            await operation()
        except FileNotFoundError:
            if self._folders.pop(folder, None) is None:
                raise
            self._close_append(key)
            self._folder(folder)
            await operation()

    async def _store(self, key: str, data: bytes, publish: Callable[[str, str], None]) -> None:
        await self._retry_in_new_folder(key, lambda: self._io(self._store_once, key, data, publish))

    def _store_once(self, key: str, data: bytes, publish: Callable[[str, str], None]) -> None:
        final_path = self.url(key)
        directory, name = os.path.split(final_path)
        temp_path = os.path.join(directory, temp_name(name))
        try:
            self._write_temp(temp_path, data)
            try:
                publish(temp_path, final_path)
            except BaseException:
                _remove_quietly(temp_path)
                raise
        except OSError as exc:
            if exc.filename == temp_path:
                exc.filename = final_path
            raise
        if self.durable:
            _fsync_directory(directory)

    def _append(self, key: str, data: bytes) -> None:
        fd = self._append_fds.get(key)
        if fd is None:
            fd = os.open(self.url(key), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._append_fds[key] = fd
            if self.durable:
                _fsync_directory(os.path.dirname(self.url(key)))
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # one write for a regular file; more only when it was cut short
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # never leave half an append before the next one
            exc.filename = exc.filename or self.url(key)
            raise

    def _close_append(self, key: str) -> None:
        fd = self._append_fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def _clean_stale_temps(self) -> int:
        if not self.root.is_dir():
            return 0
        folders = [self.root, *(folder for folder in self.root.iterdir() if folder.is_dir() and not folder.is_symlink())]
        removed = 0
        for folder in folders:
            for path in folder.iterdir():
                pid = temp_owner_pid(path.name)
                if pid is not None and not process_alive(pid):
                    removed += _remove_quietly(path)
        return removed

    def _inside_root(self, directory: str) -> bool:
        real_root, real_directory = os.path.realpath(self.root), os.path.realpath(directory)
        return real_directory == real_root or real_directory.startswith(real_root.rstrip(os.sep) + os.sep)

    def _folder(self, folder: str) -> str:
        directory = self._folders.get(folder)
        if directory is None:
            directory = self.url(folder)
            try:
                os.makedirs(directory, exist_ok=True)
            except FileExistsError as exc:  # a file or a dangling symlink holds the name: not a name collision
                raise NotADirectoryError(errno.ENOTDIR, "cannot create the folder: the name is taken by a file "
                                         "or a dangling symlink", exc.filename or directory) from exc
            self._folders[folder] = directory
        return directory

    def _write_temp(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _remove_quietly(path)
            raise
        os.close(fd)

    def _publish(self, temp_path: str, final_path: str) -> None:
        """Move ``temp_path`` to ``final_path``; FileExistsError rather than overwrite,
        by the first primitive this file system has (the choice is remembered)."""
        if self._renames_without_replace:
            try:
                self._rename_no_replace(temp_path, final_path)
                return
            except OSError as exc:
                if exc.errno not in _NO_RENAME_NOREPLACE:
                    raise
                self._renames_without_replace = False
        if self._hard_links:
            try:
                self._hard_link(temp_path, final_path)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                self._hard_links = False
            else:
                os.unlink(temp_path)
                return
        self._locked_rename(temp_path, final_path)

    @staticmethod
    def _rename_no_replace(source: str, target: str) -> None:
        """``renameat2(..., RENAME_NOREPLACE)``: one system call that fails if ``target`` exists."""
        if _renameat2 is None:
            raise OSError(errno.ENOSYS, "renameat2 is not available", target)
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), target)

    @staticmethod
    def _hard_link(source: str, target: str) -> None:
        os.link(source, target)

    def _locked_rename(self, temp_path: str, final_path: str) -> None:
        """Check and rename under an exclusive ``fcntl`` lock on ``<root>/.publish.lock``
        that every writer publishing this way takes, so no other can slip in between."""
        fd = os.open(os.path.join(self.root, PUBLISH_LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.lexists(final_path):
                raise FileExistsError(errno.EEXIST, "file exists", final_path)
            os.replace(temp_path, final_path)
        finally:
            os.close(fd)  # releases the lock


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (True when it exists but is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_quietly(path: str | Path) -> int:
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0
