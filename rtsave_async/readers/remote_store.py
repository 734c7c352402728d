"""A run in object storage (``s3://bucket/prefix/run``, any fsspec URL), read through fsspec.

Open segments are stored as part folders (:mod:`rtsave_async.remote.parts`); this
store shows each as the ``.open`` file the local layout has, holding the bytes its
parts cover from 0 on, so :class:`~rtsave_async.readers.run.Run` and its cursor read a
live remote run exactly as a local one. Listings are never cached: every ``list``
asks the server (a live run changes between polls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rtsave_async.names import OPEN_SUFFIX, PARTS_SUFFIX, parts_folder, part_offset, split_key
from rtsave_async.readers.store import RunStore
from rtsave_async.remote.filesystem import filesystem, scrub
from rtsave_async.remote.parts import Part, contiguous, pieces_between
from rtsave_async.remote.urls import RemoteUrl, parse_url


class FsspecRunStore(RunStore):
    """The run at ``url``; ``storage_options`` go to the fsspec file system (default:
    the backend's own environment and config, e.g. ``AWS_ENDPOINT_URL``)."""

    def __init__(self, url: str | RemoteUrl, storage_options: Mapping[str, Any] | None = None, *,
                 fs: Any = None) -> None:
        self.remote = url if isinstance(url, RemoteUrl) else parse_url(url)
        self.storage_options = dict(storage_options or {})
        self.fs = fs if fs is not None else filesystem(self.remote, self.storage_options)

    def _entries(self, prefix: str) -> list[dict[str, Any]]:
        try:
            return self.fs.ls(self.remote.join(prefix), detail=True, refresh=True)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        for entry in self._entries(prefix):
            name = entry["name"].rstrip("/").rpartition("/")[2]
            if entry["type"] == "directory":
                if name.endswith(OPEN_SUFFIX + PARTS_SUFFIX):
                    keys.append(name.removesuffix(PARTS_SUFFIX))
            else:
                keys.append(name)
        return [f"{prefix}/{name}" if prefix else name for name in dict.fromkeys(keys)]

    def folders(self, prefix: str = "") -> list[str]:
        return [entry["name"].rstrip("/").rpartition("/")[2] for entry in self._entries(prefix)
                if entry["type"] == "directory" and not entry["name"].endswith(PARTS_SUFFIX)]

    def parts(self, key: str) -> list[Part]:
        """The uploaded parts of open segment ``key`` (empty if it has none)."""
        found = []
        for entry in self._entries(parts_folder(key)):
            offset = part_offset(entry["name"].rpartition("/")[2])
            if entry["type"] == "file" and offset is not None:
                found.append(Part(offset, int(entry["size"]), entry["name"]))
        return found

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if key.endswith(OPEN_SUFFIX):
            parts = self.parts(key)
            if parts:
                pieces, covered = contiguous(parts)
                wanted = pieces_between(pieces, start, covered if end is None else min(end, covered))
                return b"".join(self.fs.cat_file(part.path, start=first, end=last) for part, first, last in wanted)
        path = self.remote.join(key)
        if start == 0 and end is None:
            return self.fs.cat_file(path)
        if end is not None and end <= start or start >= self.size(key):
            return b""  # a ranged GET past the end is an error in S3, an empty read locally
        return self.fs.cat_file(path, start=start, end=end)

    def size(self, key: str) -> int:
        if key.endswith(OPEN_SUFFIX):
            parts = self.parts(key)
            if parts:
                return contiguous(parts)[1]
        info = self.fs.info(self.remote.join(key))
        if info["type"] != "file":
            raise FileNotFoundError(self.url(key))
        return int(info["size"])

    def exists(self, key: str) -> bool:
        folder, name = split_key(key)
        return key in self.list(folder) if name else False

    def url(self, key: str = "") -> str:
        return str(self.remote.child(key)) if key else str(self.remote)

    def is_run_root(self) -> bool:
        """False for a missing prefix or bucket; ``ConnectionError`` naming the URL (never
        the credentials) when the storage cannot be asked: a wrong endpoint, no network."""
        try:
            return self.fs.isdir(self.remote.path)
        except (FileNotFoundError, PermissionError):
            return False
        except Exception as exc:
            raise ConnectionError(f"{self.remote}: cannot be read "
                                  f"({scrub(f'{type(exc).__name__}: {exc}', self.storage_options)})") from None

    def child(self, folder: str) -> FsspecRunStore:
        return FsspecRunStore(self.remote.child(folder), self.storage_options, fs=self.fs)

    def __repr__(self) -> str:
        return f"FsspecRunStore({str(self.remote)!r})"
