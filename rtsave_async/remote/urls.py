"""Telling a URL from a local path, and where a remote run's local spool lives.

A save_dir such as ``s3://bucket/prefix/run`` names a run in object storage; anything
without ``<protocol>://`` (and ``file://``) is a local folder. fsspec's protocol
registry decides which protocols exist, so ``gs://`` or ``memory://`` work wherever
their fsspec backend is installed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import NamedTuple

_URL_PATTERN = re.compile(r"(?P<protocol>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_LOCAL_PROTOCOLS = {"file", "local"}
#: Environment variable naming the folder under which spools are made (default: the user's cache).
SPOOL_ROOT_VARIABLE = "RTSAVE_SPOOL_ROOT"


class RemoteUrl(NamedTuple):
    """``s3://bucket/prefix/run`` taken apart: ``protocol`` ``"s3"``, ``path``
    ``"bucket/prefix/run"`` (no trailing slash), the form fsspec's calls take."""

    protocol: str
    path: str

    def __str__(self) -> str:
        return f"{self.protocol}://{self.path}"

    def join(self, key: str) -> str:
        """The fsspec path of ``key`` below this URL."""
        return f"{self.path}/{key}" if key else self.path

    def child(self, folder: str) -> RemoteUrl:
        return RemoteUrl(self.protocol, self.join(folder.strip("/")))


def is_url(path: object) -> bool:
    """True for ``<protocol>://...`` strings other than local ``file://`` ones."""
    if not isinstance(path, str):
        return False
    match = _URL_PATTERN.fullmatch(path)
    return match is not None and match["protocol"].lower() not in _LOCAL_PROTOCOLS


def parse_url(url: str) -> RemoteUrl:
    """``ValueError`` naming ``url`` when it is no ``<protocol>://<bucket>/...`` URL, or
    carries a user name or password (credentials never go in a URL: they would be
    printed and stored in manifests)."""
    match = _URL_PATTERN.fullmatch(url) if isinstance(url, str) else None
    if match is None or match["protocol"].lower() in _LOCAL_PROTOCOLS:
        raise ValueError(f"{url!r} is not a storage URL such as s3://bucket/prefix/run")
    path = match["rest"].strip("/")
    if not path or "\0" in path:
        raise ValueError(f"{redact_url(url)!r}: the URL names no bucket (expected {match['protocol']}://bucket/...)")
    if "@" in path.split("/", 1)[0]:
        raise ValueError(f"{redact_url(url)!r}: put credentials in the AWS environment or config, or in "
                         f"storage_options, not in the URL")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{url!r}: empty, '.' or '..' parts are not allowed in a storage URL")
    return RemoteUrl(match["protocol"].lower(), path)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed, for messages."""
    return re.sub(r"://[^/@]*@", "://***@", url)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/rtsave_async`` (default ``~/.cache/rtsave_async``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache, "rtsave_async")


def local_mirror(root: str | os.PathLike[str], url: RemoteUrl) -> Path:
    """``<root>/<protocol>/<bucket>/<path>``: where a local copy of ``url`` lives."""
    folder = Path(root, url.protocol, *url.path.split("/"))
    if len(str(folder)) > 1024:  # a path this long would fail to open: keep the bucket, hash the rest
        bucket = url.path.split("/", 1)[0]
        folder = Path(root, url.protocol, bucket, hashlib.sha1(url.path.encode()).hexdigest())
    return folder


def default_spool_dir(url: RemoteUrl) -> Path:
    """The spool folder of ``url``: :func:`local_mirror` under ``$RTSAVE_SPOOL_ROOT``
    (default ``~/.cache/rtsave_async/spool``); two writers of one URL on one host share
    it, as they would share a local save_dir."""
    return local_mirror(os.environ.get(SPOOL_ROOT_VARIABLE) or cache_root() / "spool", url)


def run_url_of_checkpoint(url: str) -> str:
    """``s3://b/run/checkpoints/checkpoint_....json`` -> ``s3://b/run``."""
    return url.rstrip("/").rsplit("/", 2)[0]


def save_location(save_dir: str | os.PathLike[str]) -> Path | str:
    """``save_dir`` as the package keeps it: a URL string for object storage (a ``Path``
    would fold its ``//``), else a ``Path``."""
    return str(save_dir) if is_url(save_dir) else Path(save_dir)


def same_location(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether two save_dirs name the same run (URLs compared without trailing slashes)."""
    first, second = save_location(first), save_location(second)
    if isinstance(first, str) or isinstance(second, str):
        return str(first).rstrip("/") == str(second).rstrip("/")
    return first.resolve() == second.resolve()
