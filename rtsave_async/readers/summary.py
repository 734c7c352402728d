"""A run at a glance, as plain data: :func:`summarize` (what ``rtsave inspect`` shows).

The summary is a JSON-ready dict (str keys; str, int, float, bool, None, lists and
dicts) and renders nothing, so the command line, the dashboard and scripts share it.
It reads little: the newest data files of each category (files newest first, the tail
of a segment, the last rows of a Parquet file) until the last ``window`` finished
episodes are in; overall episode and success counts come from the counters the
newest ``episodes`` records carry (the tracker's running totals), so a run of a
million records is summarized in about the time of reading its listing. Only the
mean return over *all* episodes needs every record: it is given when the run is
small enough that everything was read anyway, or with ``full=True``.

Keys of :func:`summarize` (missing data gives None / empty values, never an error):

- ``url``, ``status`` (``state`` running|finished|crashed, ``writers``: id -> state,
  ``last_update``: UTC ISO time), ``format``;
- ``algorithm``, ``policy``, ``env`` (``name``, ``num_envs``, ``ctrl_type``, ``biped``),
  ``hyperparameters`` (the usual knobs present in the run: learning_rate, n_steps, ...);
- ``progress``: ``timesteps``, ``total_timesteps``, ``fraction``, ``wall_seconds``,
  ``steps_per_second`` (of the latest training start), ``eta_seconds`` (running only),
  ``training_starts``;
- ``episodes``: ``total``, ``successes``, ``success_rate``, ``mean_return`` (None unless
  every record was read), ``complete``; ``window``: ``size``, ``episodes``, ``success_rate``,
  ``mean_return``, ``trend`` (up|down|flat), ``sparkline`` (bucket means of the returns);
- ``learning``: ``timestep``, ``fps``, ``memory_mb``, ``training_progress``, ``metrics``
  (the SB3 logger's ``train/*`` and ``rollout/*`` values);
- ``curriculum``: ``rand_power`` (per env), ``curriculum_progress``;
- ``checkpoints``: newest first, ``path``, ``timestep``, ``bytes``, ``resumable``;
  ``resume_command``: the newest resumable one's;
- ``writer_health``: ``written``, ``dropped``, ``failed``, ``errors`` (count),
  ``last_error``, ``peak_queue_depth``, ``ok`` (nothing dropped, failed or erred).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from rtsave_async.names import (
    CHECKPOINTS,
    ENVIRONMENT_STATES,
    EPISODES,
    HYPERPARAMETERS,
    LEARNING_METRICS,
    parse_utc_iso,
    utc_iso,
)
from rtsave_async.readers.run import DataFile, Record, Run, Save
from rtsave_async.readers.status import run_status

#: Finished episodes in the "last window" figures (the SB3 logger's ep_info_buffer is 100 too).
DEFAULT_WINDOW = 100
SPARK_BUCKETS = 20
#: Bytes of a segment's end read first for its newest saves (grown 8x while not enough).
_TAIL_BYTES = 1 << 20
_HYPERPARAMETER_NAMES = (
    "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range", "ent_coef",
    "vf_coef", "buffer_size", "learning_starts", "tau", "train_freq", "gradient_steps", "seed", "device",
)
#: A trend moves when the newer half of the window differs from the older by this share of their scale.
_TREND_THRESHOLD = 0.05


def summarize(run: Run, window: int = DEFAULT_WINDOW, full: bool = False, now: float | None = None) -> dict[str, Any]:
    """The summary of ``run`` (see the module docstring for its keys).

    :param window: finished episodes in the ``episodes.window`` figures (default 100)
    :param full: read every episode record, for the overall mean return
    :param now: epoch seconds the run's status and ETA are judged at (default: the current time)
    """
    now = time.time() if now is None else now
    status = run_status(run, now=now)
    starts = list(run.records(HYPERPARAMETERS, with_metadata=True))  # one per training start
    latest_start = starts[-1].data if starts else {}
    files = run.files_by_category()  # listed once: a json run's listing is most of the cost
    episodes_read = newest_saves(run, files.get(EPISODES, []), lambda saves: _finished_count(saves) >= window,
                                 everything=full)
    states = newest_saves(run, files.get(ENVIRONMENT_STATES, []), bool)
    learning = newest_saves(run, files.get(LEARNING_METRICS, []), bool)
    newest_state = _last_record(states.saves)
    newest_learning = _last_record(learning.saves)
    manifest = run.manifest() or {}
    return {
        "url": run.url,
        "status": {"state": status.state, "writers": status.writers,
                   "last_update": None if status.last_update is None else utc_iso(status.last_update)},
        "format": manifest.get("format"),
        "algorithm": latest_start.get("model_type"),
        "policy": latest_start.get("policy_type"),
        "env": _env(newest_state),
        "hyperparameters": _hyperparameters(latest_start),
        "progress": _progress(starts, [episodes_read, states, learning], status.state, now),
        "episodes": _episodes(episodes_read, window),
        "learning": _learning(newest_learning),
        "curriculum": {"rand_power": newest_state.get("rand_power"),
                       "curriculum_progress": newest_learning.get("curriculum_progress")},
        **_checkpoints(run, CHECKPOINTS in files),
        "writer_health": writer_health(run),
    }


class NewestSaves(NamedTuple):
    """The newest saves of a category (oldest first) and whether they are all of them."""

    saves: list[Save]
    complete: bool


def newest_saves(run: Run, files: Sequence[DataFile], enough: Callable[[list[Save]], bool],
                 everything: bool = False) -> NewestSaves:
    """Saves from a category's data ``files`` (as ``Run.data_files`` lists them), read from the
    newest file backwards until ``enough(saves)`` (saves in order), and at least the newest
    file of every writer; ``everything``: all of them."""
    writers_left = {data_file.name.tag for data_file in files}
    chunks: list[list[Save]] = []  # per file read, newest file first
    complete = True

    def gathered(newer: list[Save] = ()) -> list[Save]:
        return sorted([*newer, *(save for chunk in chunks for save in chunk)], key=_order)

    for position in range(len(files) - 1, -1, -1):
        data_file = files[position]
        writers_left.discard(data_file.name.tag)
        file_saves, whole = _newest_of_file(run, data_file,
                                            lambda found: not everything and enough(gathered(found)))
        chunks.append(file_saves)
        complete = complete and whole
        if not everything and not writers_left and enough(gathered()):
            complete = complete and position == 0
            break
    return NewestSaves(gathered(), complete)


def _order(save: Save) -> tuple[int, str, str, int]:
    return save.order


def _newest_of_file(run: Run, data_file: DataFile, enough: Callable[[list[Save]], bool]) -> tuple[
        list[Save], bool]:
    """The newest saves of one data file, growing the part read until ``enough``; and whether it was all."""
    kind = data_file.name.kind
    category = data_file.key.partition("/")[0]
    if kind == "json":
        return run.read_whole_file(category, data_file), True
    if kind == "parquet":
        return _parquet_tail(run, category, data_file, enough)
    tail = _TAIL_BYTES
    while True:
        saves, whole = run.read_segment_tail(category, data_file, tail)
        if whole or enough(saves):
            return saves, whole
        tail *= 8


def _parquet_tail(run: Run, category: str, data_file: DataFile, enough: Callable[[list[Save]], bool]) -> tuple[
        list[Save], bool]:
    """The saves of a Parquet file's last row groups, as many as ``enough`` needs."""
    from rtsave_async.readers.parquet import open_parquet, read_table, table_saves

    try:
        data = run.store.read(data_file.key)
        groups = open_parquet(data).num_row_groups
        first = groups - 1
        while True:
            saves = table_saves(read_table(data, first_row_group=max(first, 0)), category, data_file.key)
            if first <= 0:
                return saves, True
            if len(saves) > 1 and enough(saves[1:]):  # the first save may begin in an earlier row group
                return saves[1:], False
            first -= max(1, groups - first)  # twice as many groups
    except FileNotFoundError:
        return [], True
    except ValueError as exc:
        run.report(data_file.key, None, str(exc))
        return [], True


def _last_record(saves: Sequence[Save]) -> dict[str, Any]:
    for save in reversed(saves):
        for record in reversed(save.records()):
            if isinstance(record, dict):
                return record
    return {}


def _finished(saves: Sequence[Save]) -> list[dict[str, Any]]:
    return [episode for save in saves for record in save.records() if isinstance(record, dict)
            for episode in record.get("finished_episodes") or () if isinstance(episode, dict)]


def _finished_count(saves: Sequence[Save]) -> int:
    return sum(len(record.get("finished_episodes") or ()) for save in saves for record in save.records()
               if isinstance(record, dict))


def number_or_none(value: Any) -> float | None:
    """``value`` as a float if it is a number (an int or a float, not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _env(state: dict[str, Any]) -> dict[str, Any]:
    summary = state.get("environment_summary") or {}
    return {"name": summary.get("env_name") or summary.get("env_id"), "num_envs": state.get("num_envs"),
            "ctrl_type": summary.get("ctrl_type"), "biped": summary.get("biped")}


def _hyperparameters(start: dict[str, Any]) -> dict[str, Any]:
    values = start.get("algorithm_hyperparameters") or {}
    return {name: values[name] for name in _HYPERPARAMETER_NAMES
            if name in values and (values[name] is None or isinstance(values[name], (int, float, str, bool)))}


def _progress(starts: list[Record], reads: list[NewestSaves], state: str, now: float) -> dict[str, Any]:
    newest = [(save.time, record.get("timestep")) for read in reads for save in read.saves[-1:]
              for record in save.records() if isinstance(record, dict)]
    timesteps = max((timestep for _, timestep in newest if isinstance(timestep, int)), default=None)
    last_time = max((parse_utc_iso(moment) for moment, _ in newest if moment), default=None)
    start_times = [parse_utc_iso(record.time) for record in starts]
    first_start = next((moment for moment in start_times if moment is not None), None)
    latest_start_time = start_times[-1] if start_times else None
    latest = starts[-1].data if starts and isinstance(starts[-1].data, dict) else {}
    total = latest.get("total_timesteps")
    end = now if state == "running" else last_time
    wall = None if first_start is None or end is None else max(0.0, end - first_start)
    speed = None
    start_step = latest.get("timestep")
    if None not in (latest_start_time, last_time, timesteps, start_step) and last_time > latest_start_time:
        speed = (timesteps - start_step) / (last_time - latest_start_time)
    eta = None
    if state == "running" and speed and isinstance(total, int) and timesteps is not None:
        eta = max(0.0, (total - timesteps) / speed)
    fraction = min(1.0, timesteps / total) if isinstance(total, int) and total > 0 and timesteps is not None else None
    return {"timesteps": timesteps, "total_timesteps": total, "fraction": fraction, "wall_seconds": wall,
            "steps_per_second": speed, "eta_seconds": eta, "training_starts": len(starts)}


def _episodes(read: NewestSaves, window: int) -> dict[str, Any]:
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}  # (writer, env_id) -> newest record
    for save in read.saves:
        for record in save.records():
            if isinstance(record, dict):
                latest[(save.writer, record.get("env_id"))] = record
    total = sum(int(record.get("episode_count") or 0) for record in latest.values())
    successes = sum(int(record.get("success_count") or 0) for record in latest.values())
    finished = _finished(read.saves)
    recent = finished[-window:]
    returns = [value for episode in recent if (value := number_or_none(episode.get("return"))) is not None]
    outcomes = [bool(episode["is_success"]) for episode in recent if episode.get("is_success") is not None]
    every_return = [value for episode in finished if (value := number_or_none(episode.get("return"))) is not None]
    return {
        "total": total if latest else None,
        "successes": successes if latest else None,
        "success_rate": successes / total if total else None,
        "mean_return": _mean(every_return) if read.complete else None,
        "complete": read.complete,
        "window": {"size": window, "episodes": len(recent), "success_rate": _mean([float(o) for o in outcomes]),
                   "mean_return": _mean(returns), "trend": trend(returns), "sparkline": buckets(returns)},
    }


def trend(values: Sequence[float]) -> str | None:
    """``"up"``, ``"down"`` or ``"flat"``: the newer half of ``values`` against the older (None below 4 values)."""
    if len(values) < 4:
        return None
    half = len(values) // 2
    older, newer = _mean(values[:half]), _mean(values[half:])
    scale = max(abs(older), abs(newer), max(values) - min(values), 1e-12)
    if abs(newer - older) <= _TREND_THRESHOLD * scale:
        return "flat"
    return "up" if newer > older else "down"


def buckets(values: Sequence[float], count: int = SPARK_BUCKETS) -> list[float]:
    """Means of ``values`` in at most ``count`` consecutive, nearly equal buckets (a sparkline's points)."""
    count = min(count, len(values))
    return [_mean(values[index * len(values) // count:(index + 1) * len(values) // count]) for index in range(count)]


def _learning(record: dict[str, Any]) -> dict[str, Any]:
    logger = record.get("logger") or {}
    return {"timestep": record.get("timestep"), "fps": record.get("fps"), "memory_mb": record.get("memory_usage_mb"),
            "training_progress": record.get("training_progress"),
            "metrics": {name: value for name, value in logger.items()
                        if name.startswith(("train/", "rollout/")) and number_or_none(value) is not None}}


def checkpoint_rows(run: Run) -> list[dict[str, Any]]:
    """Every checkpoint ``run`` lists, newest first: ``key``, ``path`` (its URL),
    ``timestep``, ``bytes`` (None unless complete), ``created`` (UTC seconds),
    ``resumable`` (complete, with a model, and not marked otherwise) and ``resume_command``."""
    rows = []
    for record in run.records(CHECKPOINTS, with_metadata=True):
        metadata = record.data if isinstance(record.data, dict) else {}
        checkpoint = run.complete_checkpoint(record)
        recovery = metadata.get("recovery_info") or {}
        rows.append({
            "key": record.key, "path": run.store.url(record.key), "timestep": metadata.get("timestep"),
            "bytes": checkpoint.bytes if checkpoint else None, "created": record.time,
            "resumable": bool(checkpoint and recovery.get("can_resume", True)
                              and (metadata.get("contents") or {}).get("model", True)),
            "resume_command": recovery.get("resume_command"),
        })
    rows.reverse()
    return rows


def _checkpoints(run: Run, any_written: bool) -> dict[str, Any]:
    rows = checkpoint_rows(run) if any_written else []
    command = next((row["resume_command"] for row in rows if row["resumable"]), None)
    return {"checkpoints": [{name: value for name, value in row.items() if name not in ("key", "resume_command")}
                            for row in rows], "resume_command": command}


def writer_counters(stats: dict[str, Any]) -> dict[str, Any]:
    """The counters of a run's writers (``Run.writer_stats()``) added up: submitted,
    written, dropped, failed, bytes written, the peak queue depth, every error (a list),
    whether a writer died; ``ok`` is False when anything was dropped, failed or went wrong.
    Runs without per-writer manifests use the legacy total."""
    each = [manifest.get("stats") or {} for manifest in stats["writers"].values()] or (
        [stats["total"]] if stats["total"] else [])

    def total(key: str) -> int:
        return sum(int(number_or_none(one.get(key)) or 0) for one in each)

    counters: dict[str, Any] = {key: total(key) for key in ("submitted", "written", "dropped", "failed",
                                                           "bytes_written")}
    counters["peak_queue_depth"] = max((int(number_or_none(one.get("peak_queue_depth")) or 0) for one in each), default=0)
    counters["errors"] = [str(error) for one in each for error in one.get("errors") or ()]
    counters["writers"] = len(each)
    counters["writer_died"] = any(one.get("writer_died") is True for one in each)
    counters["ok"] = not (counters["dropped"] or counters["failed"] or counters["errors"] or counters["writer_died"])
    return counters


def writer_health(run: Run) -> dict[str, Any]:
    """The writers' counters together: written, dropped, failed, errors (a count) and the
    last error, peak queue depth (see :func:`writer_counters`)."""
    counters = writer_counters(run.writer_stats())
    errors = counters["errors"]
    return {"writers": counters["writers"], "written": counters["written"], "dropped": counters["dropped"],
            "failed": counters["failed"], "errors": len(errors), "last_error": errors[-1] if errors else None,
            "peak_queue_depth": counters["peak_queue_depth"], "writer_died": counters["writer_died"],
            "ok": counters["ok"]}


def run_row(name: str, run: Run, now: float | None = None) -> dict[str, Any]:
    """One line of a parent folder's table: name, status, timesteps, success rate, last update."""
    now = time.time() if now is None else now
    status = run_status(run, now=now)
    files = run.files_by_category()
    episodes = newest_saves(run, files.get(EPISODES, []), bool)
    reads = [episodes, newest_saves(run, files.get(LEARNING_METRICS, []), bool)]
    newest = [record.get("timestep") for read in reads for save in read.saves[-1:] for record in save.records()
              if isinstance(record, dict)]
    counts = _episodes(episodes, DEFAULT_WINDOW)
    return {"name": name or ".", "url": run.url, "state": status.state,
            "timesteps": max((step for step in newest if isinstance(step, int)), default=None),
            "success_rate": counts["success_rate"], "episodes": counts["total"],
            "last_update": None if status.last_update is None else utc_iso(status.last_update)}
