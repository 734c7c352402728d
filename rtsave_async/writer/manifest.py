"""The run's manifests: ``run.json``, ``writers/<writer_id>.json`` and the stats total.

``run.json`` (``{"format_version", "format", "created", "writers"}``) is created by the
first writer of a save_dir; later writers add their id to it (read-modify-replace under
the sink's lock). A save_dir without ``run.json`` but with data files was written
before manifests existed, in the json format. Each writer keeps its own
``writers/<id>.json`` (host, pid, start, format, ``closed``, stats) up to date, and at
close ``writer_stats.json`` gets the total over the run's writers, for older scripts.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from typing import Any

import orjson

from rtsave_async import names
from rtsave_async.formats import JSON
from rtsave_async.formats.serialize import ORJSON_OPTIONS
from rtsave_async.sinks.base import Sink
from rtsave_async.sinks.local import process_alive

FORMAT_VERSION = 1
_SUMMED = ("submitted", "written", "failed", "dropped", "pending", "bytes_written", "nonfinite_values",
           "placeholders", "queue_depth", "encoded_on_submit")
_SUMMED_BY_CATEGORY = ("written_by_category", "failed_by_category", "dropped_by_category")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=ORJSON_OPTIONS | orjson.OPT_INDENT_2)


async def join_run(sink: Sink, writer_id: str, format_name: str, started: float) -> None:
    """Create ``run.json`` or add ``writer_id`` to it.

    :raises ValueError: naming ``format`` when the run was written in another format
    """
    async with sink.exclusive(names.RUN_MANIFEST_KEY):
        try:
            manifest = orjson.loads(await sink.read(names.RUN_MANIFEST_KEY))
        except FileNotFoundError:
            existing = JSON if await _holds_data_files(sink) else None
            manifest = {"format_version": FORMAT_VERSION, "format": existing or format_name,
                        "created": names.utc_iso(started), "writers": []}
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{sink.url(names.RUN_MANIFEST_KEY)}: not a run manifest ({exc})") from None
        if manifest.get("format") != format_name:
            raise ValueError(f"format {format_name!r} differs from the run's format {manifest.get('format')!r} "
                             f"in {sink.url(names.RUN_MANIFEST_KEY)}; use that format or another save_dir")
        if writer_id not in manifest.setdefault("writers", []):
            manifest["writers"].append(writer_id)
        await sink.replace(names.RUN_MANIFEST_KEY, _dumps(manifest))


async def _holds_data_files(sink: Sink) -> bool:
    """Whether a save_dir without ``run.json`` holds a run from before manifests."""
    if names.STATS_KEY in await sink.list(""):
        return True
    for category in names.STANDARD_CATEGORIES:
        if any(names.parse_name(names.split_key(key)[1]) for key in await sink.list(category)):
            return True
    return False


def writer_info(writer_id: str, format_name: str, started: float) -> dict[str, Any]:
    """The fixed part of a writer's manifest."""
    return {"writer": writer_id, "host": socket.gethostname(), "pid": os.getpid(),
            "started": names.utc_iso(started), "format": format_name}


async def write_writer_manifest(sink: Sink, info: dict[str, Any], stats: dict[str, Any], closed: bool,
                                now: float) -> None:
    """Replace ``writers/<id>.json`` with ``info`` plus the current ``stats``."""
    manifest = {**info, "closed": closed, "stats": stats, "updated": names.utc_iso(now)}
    await sink.replace(names.writer_manifest_key(info["writer"]), _dumps(manifest))


async def other_writers(sink: Sink, writer_id: str) -> dict[str, dict[str, Any] | None]:
    """The run's writers other than ``writer_id`` -> their manifest (None if it cannot
    be read: never written yet, or another program's file)."""
    try:
        others = [other for other in orjson.loads(await sink.read(names.RUN_MANIFEST_KEY)).get("writers", [])
                  if other != writer_id]
    except (FileNotFoundError, orjson.JSONDecodeError, AttributeError):
        others = []
    manifests: dict[str, dict[str, Any] | None] = {}
    for other in others:
        try:
            manifest = orjson.loads(await sink.read(names.writer_manifest_key(other)))
        except (FileNotFoundError, orjson.JSONDecodeError):
            manifest = None
        manifests[other] = manifest if isinstance(manifest, dict) else None
    return manifests


async def dead_writer_tags(sink: Sink, writer_id: str) -> set[str]:
    """File-name tags of the run's other writers that provably write no more: their
    manifest says ``closed``, or they ran on this host and their pid is gone."""
    dead = set()
    for other, manifest in (await other_writers(sink, writer_id)).items():
        if manifest is None:
            continue
        pid = manifest.get("pid")
        gone = manifest.get("host") == socket.gethostname() and isinstance(pid, int) and not process_alive(pid)
        if manifest.get("closed") is True or gone:
            dead.add(names.writer_tag(other))
    return dead


async def write_total_stats(sink: Sink, writer_id: str, stats: dict[str, Any]) -> None:
    """``writer_stats.json``: ``stats`` added to those of the run's other writers."""
    totals = [stats]
    for manifest in (await other_writers(sink, writer_id)).values():
        if manifest is not None and isinstance(manifest.get("stats"), dict):
            totals.append(manifest["stats"])
    await sink.replace(names.STATS_KEY, _dumps(total_stats(totals)))


def total_stats(all_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The first writer's stats with the counters of every writer summed; one writer's
    stats are returned as they are."""
    if len(all_stats) == 1:
        return all_stats[0]
    total = dict(all_stats[0])
    for field in _SUMMED:
        total[field] = sum(stats.get(field, 0) for stats in all_stats)
    for field in _SUMMED_BY_CATEGORY:
        total[field] = dict(sum((Counter(stats.get(field, {})) for stats in all_stats), Counter()))
    total["peak_queue_depth"] = max(stats.get("peak_queue_depth", 0) for stats in all_stats)
    total["errors"] = list(dict.fromkeys(error for stats in all_stats for error in stats.get("errors", [])))
    total["writers"] = [stats.get("writer") for stats in all_stats]
    return total
