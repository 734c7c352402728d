"""``rtsave sync``'s work: upload what a run folder has and the bucket lacks, then verify.

The same :class:`~rtsave_async.upload.Uploader` as the writer's, run once over the
whole folder: the bucket is listed first, so what is there already (same size) is
skipped, and an interrupted sync resumes where it stopped. Safe while a writer still
writes the folder (it only reads published files and prefixes of open segments; every
PUT is create-only or a manifest merge) and safe to run again (it then uploads nothing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtsave_async import names
from rtsave_async.remote.urls import RemoteUrl
from rtsave_async.upload.uploader import Uploader, is_mutable, spool_keys


@dataclass
class SyncReport:
    """What a sync did: counters of the uploader, and the keys that failed verification."""

    complete: bool
    stats: dict[str, Any]
    verified: int = 0
    missing: list[str] = field(default_factory=list)  # not in the bucket, or with another size
    mismatched: list[str] = field(default_factory=list)  # same size, other checksum
    pending: list[str] = field(default_factory=list)  # still only local when the time was up


async def sync_run(folder: str | os.PathLike[str], url: RemoteUrl, storage_options: Mapping[str, Any] | None = None,
                   timeout: float = 300.0) -> SyncReport:
    """Upload ``folder`` (a spool or any local run folder) to ``url`` and verify it:
    every key present with the local size, and the MD5 of single-PUT objects (their
    ETag) equal to the local file's. Network faults are retried until ``timeout``."""
    uploader = Uploader(folder, url, storage_options)
    await uploader.start(run_in_background=False)
    try:
        await uploader.list_remote()
        uploader.queue_spool()
        complete = await uploader.finish(timeout)
        report = SyncReport(complete, dict(uploader.stats), pending=uploader.pending())
        if complete:
            await _verify(uploader, Path(folder), report)
        return report
    finally:
        await uploader.close()


async def _verify(uploader: Uploader, folder: Path, report: SyncReport) -> None:
    remote = await uploader.list_remote()
    for key in spool_keys(folder):
        if key.endswith(names.OPEN_SUFFIX):
            covered = await uploader.remote_coverage(key)
            expected = uploader.uploaded_coverage(key) or 0
            if covered < expected and not await uploader.exists(names.published_name(key)):  # not published meanwhile
                report.missing.append(key)
            else:
                report.verified += 1
            continue
        if is_mutable(key):  # merged or replaced by other writers too: present is enough
            if key in remote:
                report.verified += 1
            else:
                report.missing.append(key)
            continue
        try:
            data = (folder / key).read_bytes()
        except FileNotFoundError:  # published or pruned meanwhile: its new name is checked
            continue
        size, etag = remote.get(key, (None, ""))
        if size != len(data):
            report.missing.append(key)
        elif etag and "-" not in etag and etag != hashlib.md5(data, usedforsecurity=False).hexdigest():
            report.mismatched.append(key)
        else:
            report.verified += 1
