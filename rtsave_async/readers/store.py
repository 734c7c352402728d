"""Where a reader finds a run's bytes: a small synchronous store keyed like the sinks.

Keys are relative POSIX strings (``"episodes/episodes_..._00000001.json"``, ``"run.json"``),
the same keys the writer's sink stores under (:mod:`rtsave_async.names`). The readers
only need listing, ranged reads and sizes, so a remote store (fsspec, issue #16) is
one more subclass of :class:`RunStore`.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

from rtsave_async.remote.urls import is_url


class RunStore(abc.ABC):
    """Read-only access to the keys of one run."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys of the files directly inside folder ``prefix`` (``""``: the run's root).

        Sub-folders are not listed (see :meth:`folders`); the order is unspecified.
        A folder that does not exist lists as ``[]``.
        """

    @abc.abstractmethod
    def folders(self, prefix: str = "") -> list[str]:
        """Names of the sub-folders directly inside folder ``prefix``."""

    @abc.abstractmethod
    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``key`` (``end=None``: to the end of the file).

        :raises FileNotFoundError: if ``key`` does not exist
        """

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size of ``key`` in bytes; ``FileNotFoundError`` if it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True if ``key`` is a file of the run."""

    @abc.abstractmethod
    def url(self, key: str = "") -> str:
        """Where ``key`` lives, for messages and for tools given a path (a local path, a URL)."""

    @abc.abstractmethod
    def is_run_root(self) -> bool:
        """True if the run's root folder exists (it may still hold nothing)."""

    @abc.abstractmethod
    def child(self, folder: str) -> RunStore:
        """The store of sub-folder ``folder`` (a relative POSIX path), e.g. a run inside a parent folder."""


class LocalRunStore(RunStore):
    """A run in a local folder ``root``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def list(self, prefix: str = "") -> list[str]:
        folder = self._path(prefix)
        try:
            with os.scandir(folder) as entries:
                names = [entry.name for entry in entries if entry.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [f"{prefix}/{name}" if prefix else name for name in names]

    def folders(self, prefix: str = "") -> list[str]:
        try:
            with os.scandir(self._path(prefix)) as entries:
                return [entry.name for entry in entries if entry.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        with open(self._path(key), "rb") as handle:
            if start:
                handle.seek(start)
            return handle.read() if end is None else handle.read(max(0, end - start))

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url(self, key: str = "") -> str:
        return str(self._path(key))

    def is_run_root(self) -> bool:
        return self.root.is_dir()

    def child(self, folder: str) -> LocalRunStore:
        return LocalRunStore(self.root / folder)

    def __repr__(self) -> str:
        return f"LocalRunStore({str(self.root)!r})"


def open_store(path_or_store: str | os.PathLike[str] | RunStore, storage_options: dict | None = None) -> RunStore:
    """The store for a local folder or a storage URL (``s3://bucket/prefix/run``: an
    :class:`~rtsave_async.readers.remote_store.FsspecRunStore` with ``storage_options``),
    or ``path_or_store`` itself if it is a store.

    :raises rtsave_async.remote.MissingExtraError: naming the extra to install for the URL's protocol
    """
    if isinstance(path_or_store, RunStore):
        return path_or_store
    if is_url(path_or_store):
        from rtsave_async.readers.remote_store import FsspecRunStore

        return FsspecRunStore(str(path_or_store), storage_options)
    return LocalRunStore(path_or_store)
