"""Local-disk sink: atomic, never-overwriting file creation under one root folder.

A file is written to a hidden temp name in its final folder, optionally fsynced, then
published with ``os.link`` (which fails if the final name exists) and the temp name
removed. A reader therefore never sees a torn file under a final name, and a crash
leaves at most a temp file, removed by :meth:`LocalSink.clean_stale_temps` at the
next start.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import aiofiles
import aiofiles.os

from rtsave_async.names import is_temp_name, temp_name, temp_owner_pid

IO_BACKENDS = ("direct", "aiofiles")
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class LocalSink:
    """Stores bytes as ``<root>/<folder>/<name>``.

    :param root: the save directory.
    :param durable: fsync each file and its folder before reporting it stored
        (survives power loss, costs a disk flush per file). Default False: files are
        still never torn, but the newest may be lost with the page cache.
    :param io: ``"direct"`` writes with plain ``os`` calls on the writer thread;
        ``"aiofiles"`` awaits aiofiles' thread-pool calls (see benchmarks/RESULTS.md
        for which is faster).
    """

    def __init__(self, root: str | os.PathLike[str], durable: bool = False, io: str = "direct") -> None:
        if io not in IO_BACKENDS:
            raise ValueError(f"io must be one of {IO_BACKENDS}, got {io!r}")
        self.root = Path(root)
        self.durable = durable
        self.io = io
        self._folders: dict[str, str] = {}  # folder name -> its path, once created
        self._hard_links = True

    async def put(self, folder: str, name: str, data: bytes) -> None:
        """Create ``folder/name`` holding ``data``; FileExistsError if the name is taken.

        A folder removed while the sink runs is created again. Errors name the final
        path, not the temp file's.
        """
        await self._store(folder, name, data, self._publish)

    async def replace(self, folder: str, name: str, data: bytes) -> None:
        """Like :meth:`put`, but an existing ``folder/name`` is swapped for the new one
        atomically. ``folder`` may be ``""`` for the root."""
        await self._store(folder, name, data, os.replace)

    async def _store(self, folder: str, name: str, data: bytes, publish: Callable[[str, str], None]) -> None:
        try:
            await self._store_once(folder, name, data, publish)
        except FileNotFoundError:
            if self._folders.pop(folder, None) is None:
                raise
            await self._store_once(folder, name, data, publish)

    async def _store_once(self, folder: str, name: str, data: bytes, publish: Callable[[str, str], None]) -> None:
        directory = self._folder(folder)
        temp_path = os.path.join(directory, temp_name(name))
        final_path = os.path.join(directory, name)
        try:
            if self.io == "aiofiles":
                try:
                    await self._write_temp_aiofiles(temp_path, data)
                except RuntimeError:  # the thread pool refuses work during interpreter shutdown
                    self._write_temp(temp_path, data)
            else:
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

    def remove(self, folder: str, names: list[str]) -> None:
        """Delete ``folder/name`` for each name; names already gone are skipped."""
        for name in names:
            _remove_quietly(self.root / folder / name)

    def existing_names(self, folder: str) -> list[str]:
        """Final (non-temp) file names in ``folder``; empty if it does not exist."""
        try:
            return [name for name in os.listdir(self.root / folder) if not is_temp_name(name)]
        except FileNotFoundError:
            return []

    def clean_stale_temps(self) -> int:
        """Remove temp files left by processes that no longer run (in the root and its
        folders); returns how many."""
        if not self.root.is_dir():
            return 0
        folders = [self.root, *(folder for folder in self.root.iterdir() if folder.is_dir())]
        removed = 0
        for folder in folders:
            for path in folder.iterdir():
                pid = temp_owner_pid(path.name)
                if pid is not None and not _process_alive(pid):
                    removed += _remove_quietly(path)
        return removed

    def _folder(self, folder: str) -> str:
        directory = self._folders.get(folder)
        if directory is None:
            directory = os.path.join(self.root, folder)
            os.makedirs(directory, exist_ok=True)
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

    async def _write_temp_aiofiles(self, path: str, data: bytes) -> None:
        try:
            async with aiofiles.open(path, "xb") as handle:
                await handle.write(data)
                if self.durable:
                    await handle.flush()
                    await aiofiles.os.wrap(os.fsync)(handle.fileno())
        except BaseException:
            _remove_quietly(path)
            raise

    def _publish(self, temp_path: str, final_path: str) -> None:
        if self._hard_links:
            try:
                os.link(temp_path, final_path)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                self._hard_links = False  # e.g. a filesystem without hard links
            else:
                os.unlink(temp_path)
                return
        if os.path.exists(final_path):
            raise FileExistsError(errno.EEXIST, "file exists", final_path)
        os.replace(temp_path, final_path)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
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
