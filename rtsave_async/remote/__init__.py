"""Runs in object storage (``s3://bucket/prefix/run`` and other fsspec URLs): URLs,
file systems, and the spool folder a remote run is written through."""

from rtsave_async.remote.filesystem import MissingExtraError, async_filesystem, filesystem
from rtsave_async.remote.urls import RemoteUrl, default_spool_dir, is_url, parse_url

__all__ = ["MissingExtraError", "RemoteUrl", "async_filesystem", "default_spool_dir", "filesystem", "is_url",
           "parse_url"]
