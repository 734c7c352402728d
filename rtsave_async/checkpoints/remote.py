"""Checkpoints in object storage: fetched into a local cache, then loaded as local ones.

``load_checkpoint("s3://bucket/run/checkpoints/checkpoint_....json")`` downloads the
checkpoint's JSON and every file it lists into
``~/.cache/rtsave_async/checkpoints/<protocol>/<bucket>/<path>``, the JSON last, then
verifies them (sizes, SHA-256) exactly as for a local checkpoint. A file already in
the cache with the recorded size is not fetched again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from rtsave_async.names import JSON_SUFFIX, MODEL_SUFFIX, temp_name
from rtsave_async.remote.filesystem import filesystem, scrub
from rtsave_async.remote.urls import RemoteUrl, cache_root, local_mirror, parse_url


class RemoteCheckpointError(Exception):
    """A checkpoint URL that cannot be fetched; the message names the URL (never credentials)."""


def fetch_checkpoint(url: str, storage_options: Mapping[str, Any] | None = None,
                     cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local copy of the checkpoint file at ``url`` (its ``.zip`` or ``.json``),
    with the other files of the checkpoint beside it. A ``.zip`` without a JSON is
    fetched alone (a bare SB3 model).

    :raises RemoteCheckpointError: naming ``url`` when it cannot be read
    """
    remote = parse_url(url)
    folder_path, _, name = remote.path.rpartition("/")
    folder = RemoteUrl(remote.protocol, folder_path)
    local_folder = local_mirror(Path(cache_dir) if cache_dir else cache_root() / "checkpoints", folder)
    fs = filesystem(remote, storage_options)
    json_name = name.split(".", 1)[0] + JSON_SUFFIX
    try:
        try:
            metadata_bytes = fs.cat_file(folder.join(json_name))
        except FileNotFoundError:
            if not name.endswith(MODEL_SUFFIX):
                raise
            _download(fs, folder.join(name), local_folder / name, None)
            return local_folder / name
        try:
            files = [(entry["name"], int(entry["bytes"])) for entry in orjson.loads(metadata_bytes)["files"].values()]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RemoteCheckpointError(f"{folder}/{json_name}: not a checkpoint metadata file ({exc!r})") from None
        for file_name, size in files:
            if os.path.basename(file_name) != file_name or file_name.startswith("."):
                raise RemoteCheckpointError(f"{folder}/{json_name}: lists an unsafe file name {file_name!r}")
            _download(fs, folder.join(file_name), local_folder / file_name, size)
        _write(local_folder / json_name, metadata_bytes)
    except FileNotFoundError:
        raise RemoteCheckpointError(f"{url}: no such checkpoint file") from None
    except RemoteCheckpointError:
        raise
    except Exception as exc:  # network faults, permissions, a wrong endpoint
        raise RemoteCheckpointError(f"{url}: cannot be fetched ({scrub(f'{type(exc).__name__}: {exc}', storage_options)})") from None
    return local_folder / name


def _download(fs: Any, path: str, target: Path, size: int | None) -> None:
    if size is not None and target.is_file() and target.stat().st_size == size:
        return
    _write(target, fs.cat_file(path))


def _write(target: Path, data: bytes) -> None:
    """Whole or not at all (a temp file renamed), so an interrupted fetch never leaves a
    torn file that a later fetch would take for complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(temp_name(target.name))
    temp.write_bytes(data)
    os.replace(temp, target)
