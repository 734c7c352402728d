"""fsspec file systems for storage URLs, with our defaults and a clear missing-extra message.

Options come from the usual places of the backend (for S3: ``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ``~/.aws/config`` and ``~/.aws/credentials``,
read by botocore) or from ``storage_options``, passed to the fsspec file system as
they are. Neither is ever written anywhere: messages go through :func:`scrub`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from rtsave_async.remote.urls import RemoteUrl

#: Which extra of this package brings the fsspec backend of a protocol.
EXTRAS = {"s3": "s3", "s3a": "s3"}
#: Short timeouts and few retries for S3: the uploader retries with its own backoff, and a
#: reader should fail within seconds, not minutes, when the endpoint is wrong.
S3_DEFAULTS: dict[str, Any] = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 30,
                                                 "retries": {"max_attempts": 2, "mode": "standard"}}}
_SECRET_OPTIONS = ("secret", "key", "token", "password", "aws_secret_access_key", "aws_access_key_id",
                   "aws_session_token")
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class MissingExtraError(ImportError):
    """The fsspec backend of a URL's protocol is not installed; the message names the extra."""


def _options(url: RemoteUrl, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if url.protocol in ("s3", "s3a"):
        options = {name: dict(value) if isinstance(value, dict) else value for name, value in S3_DEFAULTS.items()}
    for name, value in (storage_options or {}).items():
        if name == "config_kwargs" and isinstance(value, Mapping):
            options["config_kwargs"] = {**options.get("config_kwargs", {}), **value}
        else:
            options[name] = value
    return options


def _filesystem_class(url: RemoteUrl) -> type:
    import fsspec

    try:
        return fsspec.get_filesystem_class(url.protocol)
    except ImportError as exc:
        extra = EXTRAS.get(url.protocol)
        hint = f'pip install "rtsave_async[{extra}]"' if extra else str(exc)
        raise MissingExtraError(f"{url}: the {url.protocol}:// backend is not installed; {hint}") from None
    except ValueError:
        raise ValueError(f"{url}: unknown storage protocol {url.protocol!r} (fsspec knows none by that name)") from None


def check_backend(url: RemoteUrl) -> None:
    """``MissingExtraError`` (naming the extra) now, rather than at the first upload,
    when the backend of ``url``'s protocol is not installed."""
    _filesystem_class(url)


def filesystem(url: RemoteUrl, storage_options: Mapping[str, Any] | None = None) -> Any:
    """A synchronous fsspec file system for ``url`` (the readers'; listings are never cached)."""
    cls = _filesystem_class(url)
    options = _options(url, storage_options)
    if url.protocol in ("s3", "s3a"):
        options.setdefault("use_listings_cache", False)
    return cls(skip_instance_cache=True, **options)


async def async_filesystem(url: RemoteUrl, storage_options: Mapping[str, Any] | None = None) -> Any:
    """An fsspec file system running on the current event loop (the uploader's): its
    coroutines (``_pipe_file``, ``_ls``, ...) never block the loop while the network is slow.
    Backends without async support are wrapped by fsspec's ``AsyncFileSystemWrapper``."""
    cls = _filesystem_class(url)
    options = _options(url, storage_options)
    if getattr(cls, "async_impl", False):
        fs = cls(asynchronous=True, loop=asyncio.get_running_loop(), skip_instance_cache=True, **options)
        if hasattr(fs, "set_session"):
            await fs.set_session()
        return fs
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    return AsyncFileSystemWrapper(cls(skip_instance_cache=True, **options))


async def close_async_filesystem(fs: Any) -> None:
    """Release an :func:`async_filesystem`'s connections on its loop (before the loop closes)."""
    creator = getattr(fs, "_s3creator", None)  # s3fs: the client's context, or its region cache
    if creator is not None:
        try:
            await creator.__aexit__(None, None, None)
        except Exception:  # closing a connection that failed is no news
            pass


def scrub(text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` with every credential value we know of (``storage_options``' and the AWS
    environment's) replaced by ``***``: error texts of a backend may quote them."""
    secrets = [os.environ.get(name) for name in _SECRET_VARIABLES]
    for name, value in (storage_options or {}).items():
        if name.lower() in _SECRET_OPTIONS:
            secrets.append(value if isinstance(value, str) else None)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
